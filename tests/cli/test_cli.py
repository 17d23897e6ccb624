from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from medscale.cli.main import main

SAMPLE = Path(str(resources.files("medscale.datasets") / "samples" / "sleep-edf-sc"))


def test_datasets_list_shows_every_shipped_spec(capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "sleep-edf-sc",
        "sleep-edf-st",
        "dreams",
        "hmc",
        "mitbih-slpdb",
        "nsrr",
        "mne-generic",
    ):
        assert name in out
    assert "[synthetic]" in out


def test_ingest_then_store_info(tmp_path, capsys):
    store = tmp_path / "s.zarr"
    assert (
        main(["ingest", "sleep-edf-sc", "--source", str(SAMPLE), "--store", str(store), "-q"]) == 0
    )
    out = capsys.readouterr().out
    assert "sleep-edf-sc: 1 ingested (1 trimmed), 0 up to date, 0 failed" in out
    assert "trimmed: SC4001: signal and hypnogram cover different spans" in out
    assert main(["store", "info", str(store)]) == 0
    info = capsys.readouterr().out
    assert "sleep-edf-sc" in info and "0.08" in info  # 10 epochs of 30 s
    assert "EEG Fpz-Cz (1)" in info


def test_failed_recording_gives_exit_code_1_and_names_it(tmp_path, capsys):
    source = tmp_path / "src"
    shutil.copytree(SAMPLE, source)
    (source / "SC4001E0-PSG.edf").write_bytes(b"0       not really an EDF")
    code = main(
        ["ingest", "sleep-edf-sc", "--source", str(source), "--store", str(tmp_path / "s"), "-q"]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "failed: SC4001" in out and "SC4001E0-PSG.edf" in out


def test_bad_spec_and_missing_folder_are_one_clear_line(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nversion: 1\nsignls: {}\n")
    assert (
        main(["ingest", str(spec), "--source", str(tmp_path), "--store", str(tmp_path / "s")]) == 1
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: {spec}: ")
    assert f"{spec}: unknown key 'signls'" in err
    assert "Traceback" not in err
    assert (
        main(["ingest", "hmc", "--source", str(tmp_path / "nope"), "--store", str(tmp_path / "s")])
        == 1
    )
    assert "does not exist" in capsys.readouterr().err


def test_store_info_refuses_a_folder_that_is_not_a_store(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("hello")
    assert main(["store", "info", str(tmp_path)]) == 1
    assert "is not a medscale store" in capsys.readouterr().err


@pytest.mark.slow
def test_installed_entry_point_runs_synth_and_ingest(tmp_path):
    exe = shutil.which("medscale")
    assert exe, "the medscale console script is not installed (pip install -e .)"
    nights = tmp_path / "n"
    subprocess.run(
        [exe, "synth", str(nights), "--nights", "1", "--hours", "0.25", "-q"], check=True
    )
    done = subprocess.run(
        [exe, "ingest", "synthetic", "--source", str(nights), "--store", str(tmp_path / "s"), "-q"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "synthetic: 1 ingested" in done.stdout
