"""Short and mismatched input fails its recording by default; trimming is opted into."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from medscale.cli.main import main
from medscale.datasets.spec import load_dataset_spec, parse_dataset_spec
from medscale.ingest.run import ingest
from medscale.io.hypnograms import read_hypnogram
from medscale.store.store import Store
from medscale.synth import synthesize_nights

N_RECORDS_OFFSET = 236  # the EDF header's "number of data records" field, 8 ASCII bytes
EPOCHS = 12  # a 6-minute synthetic night


@pytest.fixture(scope="module")
def nights_master(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mismatch-nights")
    synthesize_nights(out, 2, seed=5, duration_h=0.1, progress=False)
    for psg in out.glob("*-PSG.edf"):  # the hypnograms as plain text, to cut them freely
        raw = read_hypnogram(psg.with_name(psg.name.replace("PSG", "Hypnogram")), "edf_annotations")
        assert len(raw.labels) == EPOCHS
        (out / psg.name.replace("-PSG.edf", "-stages.txt")).write_text("\n".join(raw.labels))
    return out


@pytest.fixture
def nights(nights_master, tmp_path) -> Path:
    return Path(shutil.copytree(nights_master, tmp_path / "nights"))


def _spec(
    tmp_path: Path, align: dict | None = None, truncated: str = "fail", onset_s: float = 0.0
) -> Path:
    data = load_dataset_spec("synthetic").model_dump()
    data["annotations"] = {
        "pattern": "{dir}/{id}-stages.txt",
        "format": "epoch_text",
        "label_map": "aasm_sleep_stage",
        "options": {"epoch_length_s": 30, "onset_s": onset_s},
    }
    data["signals"]["truncated"] = truncated
    data["align"] |= align or {}
    parse_dataset_spec(data)  # valid before it is written
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cut_edf(path: Path, keep_share: float) -> None:
    data = path.read_bytes()
    header_bytes = int(data[184:192])
    path.write_bytes(data[: header_bytes + int((len(data) - header_bytes) * keep_share)])


def _set_n_records(path: Path, n: int) -> None:
    data = bytearray(path.read_bytes())
    data[N_RECORDS_OFFSET : N_RECORDS_OFFSET + 8] = f"{n:<8}".encode()
    path.write_bytes(bytes(data))


def _units(report):
    return {u.recording_id: u for u in report.units}


def test_a_truncated_edf_fails_its_recording_and_the_run_exits_1(nights, tmp_path, capsys):
    _cut_edf(nights / "synth-001-PSG.edf", 0.5)
    code = main(
        ["ingest", str(_spec(tmp_path)), "--source", str(nights), "--store", str(tmp_path / "s")]
    )
    out = capsys.readouterr().out
    assert code == 1  # partial success: one stored, one failed
    assert "1 ingested (0 trimmed), 0 up to date, 1 failed" in out
    assert re.search(
        r"failed: synth-001: RecordingReadError: synth-001-PSG\.edf: header field n_records "
        r"declares 360 data records \(360 s\) but the file holds 1[78]\d \(1[78]\d s\)",
        out,
    )
    assert [i.recording_id for i in Store(tmp_path / "s").recordings()] == ["synth-000"]


def test_a_header_claiming_99999999_records_fails(nights, tmp_path):
    _set_n_records(nights / "synth-000-PSG.edf", 99_999_999)
    report = ingest(_spec(tmp_path), nights, tmp_path / "s", progress=False)
    unit = _units(report)["synth-000"]
    assert unit.status == "failed"
    assert "declares 99999999 data records" in unit.reason and "holds 360" in unit.reason
    assert not report.ok


def test_truncated_keep_ingests_what_is_there_and_reports_it_trimmed(nights, tmp_path, capsys):
    _cut_edf(nights / "synth-001-PSG.edf", 0.5)
    spec = _spec(tmp_path, {"mismatch": "trim"}, truncated="keep")
    code = main(["ingest", str(spec), "--source", str(nights), "--store", str(tmp_path / "s")])
    out = capsys.readouterr().out
    assert code == 0
    assert "2 ingested (1 trimmed)" in out
    assert "trimmed: synth-001: signal and hypnogram cover different spans" in out
    assert re.search(r"holds 1[78]\d \(1[78]\d s\); kept the records it holds", out)
    info = Store(tmp_path / "s").recording("synthetic", "synth-001")
    assert info is not None
    assert info.n_segments == EPOCHS - info.metadata["trim"]["epochs_dropped_end"]
    assert info.n_segments in (5, 6)  # 179 or 180 s, as the cut falls


@pytest.mark.parametrize("epochs", [6, 20])
def test_a_hypnogram_shorter_or_longer_than_the_signal_fails_by_default(nights, tmp_path, epochs):
    stages = nights / "synth-000-stages.txt"
    labels = stages.read_text().splitlines()
    stages.write_text("\n".join((labels * 2)[:epochs]))
    report = ingest(_spec(tmp_path), nights, tmp_path / "s", progress=False)
    unit = _units(report)["synth-000"]
    assert unit.status == "failed"
    assert (
        f"the hypnogram (synth-000-stages.txt: {epochs} epochs of 30 s = {epochs * 30} s, "
        "from 0 s) and the signal (synth-000-PSG.edf: 360.0 s) start 0.0 s and end "
        f"{abs(epochs * 30 - 360):.1f} s apart, more than align.tolerance_s = 30"
    ) in unit.reason
    assert _units(report)["synth-001"].status == "ingested"

    trimmed = ingest(_spec(tmp_path, {"mismatch": "trim"}), nights, tmp_path / "t", progress=False)
    unit = _units(trimmed)["synth-000"]
    assert unit.status == "ingested" and unit.trimmed
    assert unit.stored_duration_s == min(epochs, EPOCHS) * 30


def test_trim_still_fails_below_the_minimum_overlap(nights, tmp_path):
    def run(onset_s: float, store: str):
        spec = _spec(tmp_path, {"mismatch": "trim", "min_overlap": 0.5}, onset_s=onset_s)
        return _units(ingest(spec, nights, tmp_path / store, progress=False))["synth-000"]

    late = run(240.0, "a")  # 12 epochs from 240 s: 120 s of the 360-s signal are scored
    assert late.status == "failed"
    assert "overlap by 120.0 s, 33% of the shorter; align.min_overlap asks for 50%" in late.reason
    assert run(120.0, "b").status == "ingested"  # 240 s of 360 s: 67%


def test_an_edf_scoring_of_another_clock_time_fails_though_its_length_fits(nights, tmp_path):
    """EDF+ scorings are placed by their header's start time against the signal's."""
    hypnogram = nights / "synth-000-Hypnogram.edf"
    data = bytearray(hypnogram.read_bytes())
    hours = (int(data[176:178]) + 3) % 24  # the header's start time is 'hh.mm.ss' at 176
    data[176:178] = f"{hours:02d}".encode()
    hypnogram.write_bytes(bytes(data))
    report = ingest("synthetic", nights, tmp_path / "s", progress=False)
    units = _units(report)
    assert units["synth-000"].status == "failed"
    assert "start 10800.0 s and end 10800.0 s apart" in units["synth-000"].reason
    assert units["synth-001"].status == "ingested"
    assert "hypnogram placed by clock time: it starts 0 s after the signal" in (
        units["synth-001"].warnings
    )
