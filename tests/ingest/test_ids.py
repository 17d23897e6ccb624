"""Ids that would escape their place in the store are refused before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from medscale.cli.main import main
from medscale.datasets.spec import load_dataset_spec, parse_dataset_spec
from medscale.ingest.plan import id_problem
from medscale.ingest.run import ingest
from medscale.store.store import Store
from medscale.synth import synthesize_nights


@pytest.fixture(scope="module")
def one_night(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ids-night")
    synthesize_nights(out, 1, seed=2, duration_h=0.05, progress=False)
    return out


def _spec(recording_id: str, pattern: str = r"(^|/)(?P<id>synth-\d+)-PSG\.edf$"):
    data = load_dataset_spec("synthetic").model_dump()
    data["signals"]["pattern"] = pattern
    return parse_dataset_spec(data | {"recording_id": recording_id})


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("../../{id}", "contains a path separator"),
        ("..{id}", "contains '..'"),
        ("/tmp/{id}", "contains a path separator"),
        ("C:{id}", "starts with a drive letter"),
    ],
)
def test_an_escaping_recording_id_fails_its_recording_and_writes_nothing(
    one_night, tmp_path, template, problem
):
    store = tmp_path / "store"
    report = ingest(_spec(template), one_night, store, progress=False)
    (unit,) = report.units
    assert unit.status == "failed"
    assert unit.reason.startswith(f"refused: recording_id {template.format(id='synth-000')!r}")
    assert problem in unit.reason and "ids must be one plain name" in unit.reason
    assert not report.ok
    assert Store(store).recordings() == []
    # Nothing but the empty store and its report: no folder named after the id anywhere.
    written = {p.relative_to(tmp_path).parts[1] for p in store.rglob("*")}
    assert written <= {"zarr.json", "reports", "write.lock", "writers.lock"}
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "synth-000").exists()


def test_an_id_with_a_separator_from_the_pattern_is_refused_in_the_cli_summary(
    one_night, tmp_path, capsys
):
    nested = tmp_path / "src" / "site-a"
    nested.mkdir(parents=True)
    for f in one_night.glob("synth-000-*"):
        shutil.copy(f, nested / f.name)
    spec = tmp_path / "spec.yaml"
    data = _spec("{id}", r"(?P<id>.+)-PSG\.edf$").model_dump()
    data["annotations"]["pattern"] = "{id}-Hypnogram.edf"
    spec.write_text(yaml.safe_dump(data))
    code = main(
        ["ingest", str(spec), "--source", str(tmp_path / "src"), "--store", str(tmp_path / "s")]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "0 ingested (0 trimmed), 0 up to date, 1 failed" in out
    assert "failed: site-a/synth-000: refused: recording_id 'site-a/synth-000' contains a " in out


def test_id_problem_accepts_plain_names():
    assert id_problem("recording_id", "SC4001E0") is None
    assert id_problem("recording_id", "a.b-c_d") is None
    assert id_problem("subject", "") == "subject is empty"
