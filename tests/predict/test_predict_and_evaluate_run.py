"""A trained run's model evaluated on its test subset, and used to predict a recording file."""

from __future__ import annotations

import json
from pathlib import Path

import edfio
import numpy as np
import pytest
import yaml

from medscale.cli.main import main
from medscale.data.torch_data import EvalNights
from medscale.errors import CheckpointMismatchError
from medscale.evaluate.inference import predict_nights
from medscale.evaluate.run import evaluate_run
from medscale.predict import predict_many, predict_recording
from medscale.predict.night import read_night
from medscale.train.trained import load_trained_model

from .conftest import store_night

pytest.importorskip("torch")
pytestmark = pytest.mark.slow  # trains a (tiny) run first


def test_predict_writes_every_output_for_a_file(trained_run, tmp_path):
    run, _, nights = trained_run
    edf = sorted(nights.glob("*-PSG.edf"))[0]
    result = predict_recording(edf, run, tmp_path / "out")
    assert result.probabilities.shape == (60, 5)  # half an hour of 30-s epochs
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert set(result.channels) == {"eeg", "eog"} and len(result.channels["eeg"]) == 3
    for path in vars(result.files).values():
        assert path.is_file() and path.stat().st_size > 0


def test_evaluate_scores_the_test_subset_and_reports_training(trained_run, tmp_path):
    run, store, _ = trained_run
    split = json.loads((run / "split.json").read_text())
    result, paths = evaluate_run(run, store, out_dir=tmp_path / "eval", n_boot=20)
    assert result.pooled["usleep-small"]["n_recordings"] == len(split["subsets"]["test"])
    assert result.pooled["usleep-small"]["n_epochs"] == 60 * len(split["subsets"]["test"])
    html = paths["report.html"].read_text()
    assert "Training" in html and "Confusion" in html


def test_a_checkpoint_of_another_model_is_refused_before_loading(trained_run, tmp_path):
    run, _, _ = trained_run
    other = tmp_path / "other-run"
    other.mkdir()
    for name in ("manifest.json", "split.json"):
        (other / name).write_bytes((run / name).read_bytes())
    (other / "checkpoints").mkdir()
    (other / "checkpoints" / "last.pt").write_bytes((run / "checkpoints" / "last.pt").read_bytes())
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"], config["model_kwargs"] = "lseqsleepnet-small", {}
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointMismatchError, match="usleep-small"):
        load_trained_model(other)


def test_predict_command_names_missing_channels_and_the_hint(trained_run, tmp_path, capsys):
    run, _, nights = trained_run
    edf = sorted(nights.glob("*-PSG.edf"))[0]
    code = main(
        ["predict", str(edf), "--model", str(run), "--out", str(tmp_path), "--channels", "eog=X"]
    )
    assert code == 1
    assert "no such signal" in capsys.readouterr().err


def test_recordings_the_model_cannot_score_are_listed_not_dropped(trained_run, tmp_path):
    run, store, _ = trained_run
    split = json.loads((run / "split.json").read_text())
    subset = next(
        name for name, keys in split["subsets"].items() if "synthetic-b/synth-000" in keys
    )
    result, paths = evaluate_run(run, store, subset=subset, out_dir=tmp_path / "e", n_boot=10)
    assert list(result.not_evaluated) == ["synthetic-b/synth-000"]
    assert "synthetic-b/synth-000" in paths["metrics.json"].read_text()
    assert "not evaluated" in paths["report.html"].read_text()


def test_the_fast_path_gives_the_reference_paths_stages(trained_run, shared_data, tmp_path):
    run, _, nights = trained_run
    trained = load_trained_model(run)
    groups = trained.config.data.sampling.channel_groups
    real = shared_data / "sleepedf_edfio" / "short_psg.edf"
    for k, path in enumerate([sorted(nights.glob("*-PSG.edf"))[0], real]):
        night = read_night(path, groups)
        store, key = store_night(night, tmp_path / f"store{k}")
        nights_served = EvalNights(store, trained.config.data, recordings=[key])
        (reference,) = predict_nights(trained.model, nights_served).values()
        fast = predict_recording(path, run, tmp_path / f"out{k}")
        np.testing.assert_array_equal(fast.stages, reference.probabilities.argmax(axis=1))
        np.testing.assert_allclose(fast.probabilities, reference.probabilities, atol=1e-6)


def test_a_batch_reports_bad_files_predicts_the_rest_and_resumes(trained_run, tmp_path):
    run, _, nights = trained_run
    folder = tmp_path / "in"
    folder.mkdir()
    night = sorted(nights.glob("*-PSG.edf"))[0]
    (folder / night.name).symlink_to(night)
    (folder / "broken.edf").write_bytes(b"not an EDF file")
    # one EEG channel only: nothing fills the model's EOG group
    single = tmp_path / "single"
    single.mkdir()
    eeg_only = edfio.Edf([edfio.EdfSignal(np.zeros(256 * 60), 256, label="EEG C3-M2")])
    eeg_only.write(single / "eeg-only.edf")
    out = tmp_path / "out"
    report = predict_many([folder, str(single / "*.edf")], run, out, progress=False)
    rows = {Path(r["source"]).name: r for r in _summary(report.summary)}
    assert rows["broken.edf"]["status"] == "failed"
    assert "broken.edf" in rows["broken.edf"]["error"]
    assert rows["eeg-only.edf"]["status"] == "failed" and "'eog'" in rows["eeg-only.edf"]["error"]
    predicted = [name for name, r in rows.items() if r["status"] == "predicted"]
    assert predicted == [night.name] and rows[night.name]["n_epochs"] == "60"
    assert sum(int(rows[predicted[0]][s]) for s in ("W", "N1", "N2", "N3", "REM")) == 60
    first = (out / f"{Path(predicted[0]).stem}.hypnogram.csv").read_bytes()

    again = predict_many([folder], run, out, progress=False)
    assert [o.status for o in again.outcomes] == ["failed", "skipped"]
    assert (out / f"{Path(predicted[0]).stem}.hypnogram.csv").read_bytes() == first
    redo = predict_many([folder], run, out, progress=False, resume=False)
    assert redo.count("predicted") == 1


def test_predict_command_takes_a_glob_and_names_clashing_outputs(trained_run, tmp_path, capsys):
    run, _, nights = trained_run
    pattern = str(nights / "synth-00[0]-PSG.edf")
    assert main(["predict", pattern, "--model", str(run), "--out", str(tmp_path), "-q"]) == 0
    assert "1 predicted, 0 already predicted" in capsys.readouterr().out
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "synth-000-PSG.edf").symlink_to(nights / "synth-000-PSG.edf")
    args = ["predict", pattern, str(twin), "--model", str(run), "--out", str(tmp_path)]
    assert main(args) == 1
    assert "would clash" in capsys.readouterr().err


def _summary(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as f:
        return list(csv.DictReader(f))
