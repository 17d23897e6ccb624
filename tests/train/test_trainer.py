"""The training loop on a small synthetic store: files, manifest, refusals, rerun."""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil

import pytest

torch = pytest.importorskip("torch")

from medscale.data.splits import make_split, write_split  # noqa: E402
from medscale.errors import SpecError  # noqa: E402
from medscale.store.store import Store  # noqa: E402
from medscale.train import (  # noqa: E402
    CheckpointMismatchError,
    TrainConfig,
    load_checkpoint,
    rerun,
    save_checkpoint,
    train,
)
from medscale.train.manifest import file_sha256  # noqa: E402
from medscale.train.metrics_log import read_records  # noqa: E402

from .conftest import tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def finished_run(train_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "a"
    config = TrainConfig.from_dict(tiny_config())
    result = train(config, train_store, out, progress=False)
    return config, out, result


def test_a_run_writes_its_files_and_checkpoints(finished_run):
    config, out, result = finished_run
    assert result.finished and result.stopped == "max_steps" and result.step == 8
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert names == {
        "manifest.json",
        "config.yaml",
        "split.json",
        "metrics.csv",
        "metrics.jsonl",
        "result.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "report.html",
    }
    assert "data:image/png;base64," in (out / "report.html").read_text()  # learning curves
    assert TrainConfig.load(out / "config.yaml") == config
    records = read_records(out / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 9))
    vals = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in vals] == [4, 8]
    assert set(vals[0]) >= {"kappa", "accuracy", "macro_f1", "mcc", "f1_per_stage", "val_loss"}
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["kind"], int(r["step"])) for r in rows] == [(r["kind"], r["step"]) for r in records]
    assert float(rows[0]["loss"]) == records[0]["loss"]  # floats written exactly

    last = load_checkpoint(out / "checkpoints" / "last.pt")  # weights_only loader
    assert last["step"] == 8 and last["model_name"] == "usleep-small"
    assert set(last) >= {
        "model", "optimizer", "scheduler", "rng", "early_stopping", "sampler", "config_hash",
        "epoch", "epoch_step", "log_accumulator",
    }  # fmt: skip
    assert last["epoch"] == 1 and last["epoch_step"] == 0  # 16 samples / batch 2 = 8 steps
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["step"] == result.best_step
    saved = json.loads((out / "result.json").read_text())
    assert saved["weights_sha256"] == result.weights_sha256 and saved["finished"]


def test_the_manifest_records_config_code_versions_hardware_and_data(finished_run, train_store):
    config, out, _ = finished_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "medscale-run"
    assert manifest["config"] == config.to_dict() and manifest["seed"] == 3
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["config_hash"])
    git = manifest["git"]
    if git is not None:  # the tests run from a checkout; an installed wheel has none
        assert re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and isinstance(git["dirty"], bool)
    assert manifest["versions"]["torch"] == torch.__version__.split("+")[0] or manifest["versions"][
        "torch"
    ].startswith(torch.__version__.split("+")[0])
    assert {"python", "numpy", "medscale"} <= set(manifest["versions"])
    hw = manifest["hardware"]
    assert hw["cpu_count"] >= 1 and hw["torch_threads"] == torch.get_num_threads()
    assert isinstance(hw["cpu_model"], str) and isinstance(hw["cuda_devices"], list)
    assert manifest["store"]["content_hash"] == Store(train_store).content_hash()
    assert manifest["split"]["sha256"] == file_sha256(out / "split.json")
    assert manifest["split"]["train_recordings"] == 2
    assert manifest["split"]["val_recordings"] == 1
    assert manifest["run"]["model_kwargs"] == {"depth": 3, "init_filters": 4, "in_channels": 2}


def test_a_run_folder_is_not_overwritten(finished_run, train_store):
    config, out, _ = finished_run
    with pytest.raises(SpecError, match="already holds a run; pass resume=True"):
        train(config, train_store, out, progress=False)


def test_resuming_a_finished_run_changes_nothing(finished_run, train_store, tmp_path):
    config, out, result = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    again = train(config, train_store, copy, resume=True, progress=False)
    assert again.step == 8 and again.weights_sha256 == result.weights_sha256
    assert read_records(copy / "metrics.jsonl") == read_records(out / "metrics.jsonl")


def test_a_checkpoint_of_another_model_or_config_is_refused_before_loading(
    finished_run, train_store, tmp_path
):
    config, out, _ = finished_run
    state = load_checkpoint(out / "checkpoints" / "last.pt")

    other_model = tmp_path / "other-model"
    shutil.copytree(out, other_model)
    save_checkpoint({**state, "model_name": "lseqsleepnet"}, other_model / "checkpoints/last.pt")
    with pytest.raises(CheckpointMismatchError, match=r"model 'lseqsleepnet'.*nothing was loaded"):
        train(config, train_store, other_model, resume=True, progress=False)

    other_config = tmp_path / "other-config"
    shutil.copytree(out, other_config)
    changed = TrainConfig.from_dict(tiny_config(optimizer={"lr": 0.01}))
    with pytest.raises(CheckpointMismatchError, match=r"config hash.*nothing was loaded"):
        train(changed, train_store, other_config, resume=True, progress=False)
    for name in ("manifest.json", "metrics.jsonl", "config.yaml", "result.json"):  # untouched
        assert (other_config / name).read_bytes() == (out / name).read_bytes()

    foreign = tmp_path / "foreign"
    shutil.copytree(out / "checkpoints", foreign / "checkpoints")
    with pytest.raises(SpecError, match=r"a checkpoint but no manifest\.json"):
        train(config, train_store, foreign, resume=True, progress=False)


def test_rerun_repeats_the_run_and_reports_a_bitwise_match(finished_run, tmp_path):
    _, out, _ = finished_run
    result = rerun(out, out_dir=tmp_path / "again")
    assert result.mode == "bitwise" and result.why_tolerance == []
    assert result.matched, result.summary()
    assert result.max_weight_diff == 0.0
    assert "MATCH (bitwise)" in result.summary()


def test_the_cli_reruns_a_run(finished_run, tmp_path, capsys):
    from medscale.cli.main import main

    _, out, _ = finished_run
    assert main(["rerun", str(out), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert "MATCH (bitwise)" in capsys.readouterr().out


def test_rerun_spots_a_changed_result(finished_run, tmp_path):
    _, out, _ = finished_run
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    state = load_checkpoint(tampered / "checkpoints" / "last.pt")
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 1e-3
    save_checkpoint(state, tampered / "checkpoints" / "last.pt")
    result = rerun(tampered, out_dir=tmp_path / "again")
    assert not result.matched and not result.weights_match and result.metrics_match
    assert name in result.differences[0]


def test_a_split_file_and_a_data_fraction_choose_the_training_recordings(train_store, tmp_path):
    split = make_split(train_store, val_fraction=0.25, test_fraction=0.25, seed=9)
    path = write_split(split, tmp_path / "split.json")
    config = TrainConfig.from_dict(
        tiny_config(split={"file": str(path)}, data_fraction=0.5, max_steps=2, val_every=2)
    )
    result = train(config, train_store, tmp_path / "run", progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["split"]["sha256"] == file_sha256(path)
    assert manifest["split"]["train_recordings"] == len(split.fraction(0.5)) == 1
    assert result.finished


def test_early_stopping_stops_after_patience_validations(train_store, tmp_path):
    config = TrainConfig.from_dict(
        tiny_config(
            max_steps=40,
            val_every=1,
            optimizer={"lr": 1e-9},  # nothing improves after the first validation
            early_stopping={"metric": "macro_f1", "patience": 2, "min_delta": 0.5},
        )
    )
    result = train(config, train_store, tmp_path / "run", progress=False)
    assert result.stopped == "early_stopping" and result.finished
    assert result.step == 3 and result.best_step == 1


def test_lseqsleepnet_validates_nights_whose_last_chunk_is_not_a_whole_subsequence(
    train_store, tmp_path
):
    """60-epoch nights in chunks of 7 for a model folding subsequences of 3: the chunks
    (7 = 2 × 3 + 1) and the last one (60 - 8 × 7 = 4 = 3 + 1) are padded and masked, and
    every epoch of the night is scored."""
    small = {"n_filters": 4, "epoch_hidden": 4, "attention_size": 4, "seq_hidden": 4}
    data = tiny_config()["data"]
    config = TrainConfig.from_dict(
        tiny_config(
            model="lseqsleepnet-small",
            model_kwargs={**small, "fc_size": 8, "seq_len": 6, "subseq_len": 3},
            data={
                **data,
                "sampling": {**data["sampling"], "window_epochs": 6},
                "processing": {"spectrogram": {}},
                "eval_chunk_epochs": 7,
            },
            max_steps=1,
            val_every=1,
        )
    )
    result = train(config, train_store, tmp_path / "run", progress=False)
    assert result.last_validation["n_nights"] == 1 and result.last_validation["n_epochs"] == 60


def test_a_model_that_does_not_fit_the_data_is_refused_before_training(train_store, tmp_path):
    config = TrainConfig.from_dict(
        tiny_config(model_kwargs={"depth": 3, "init_filters": 4, "epoch_samples": 3000})
    )
    with pytest.raises(SpecError) as info:
        train(config, train_store, tmp_path / "run", progress=False)
    message = str(info.value)
    assert message.startswith("model 'usleep-small' does not fit the data of task 'sleep_staging'")
    assert message.endswith("segment_samples: model 3000, data 3840")
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_missing_log_backends_are_skipped_with_a_warning(train_store, tmp_path, caplog):
    try:
        import mlflow  # noqa: F401

        pytest.skip("mlflow is installed here")
    except ImportError:
        pass
    config = TrainConfig.from_dict(
        tiny_config(max_steps=1, log=["csv", "jsonl", "mlflow"], split={"val_subset": None})
    )
    with caplog.at_level(logging.WARNING, logger="medscale.train.metrics_log"):
        result = train(config, train_store, tmp_path / "run", progress=False)
    assert "log backend 'mlflow' is not installed" in caplog.text
    assert result.finished and result.best_checkpoint is not None  # best = last without val


@pytest.mark.slow
def test_end_to_end_usleep_small_on_a_synthetic_store(train_store, tmp_path):
    """The registry's usleep-small as it is, a few dozen steps, soft vote over 2 EEG × 1 EOG."""
    config = TrainConfig.from_dict(
        tiny_config(
            model_kwargs={},
            data={
                "sampling": {
                    "window_epochs": 2,
                    "samples_per_epoch": 64,
                    "channel_groups": [
                        {"name": "eeg", "names": ["EEG C4-M1", "EEG F4-M1"]},
                        {"name": "eog", "names": ["EOG E1-M2"]},
                    ],
                },
                "eval_chunk_epochs": 60,
            },
            max_steps=24,
            val_every=12,
            checkpoint_every=12,
            log_every=4,
            batch_size=4,
        )
    )
    result = train(config, train_store, tmp_path / "run", progress=False)
    assert result.finished and result.step == 24
    vals = [r for r in read_records(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "val"]
    assert [v["step"] for v in vals] == [12, 24] and vals[-1]["n_epochs"] == 60
    losses = [r["loss"] for r in read_records(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert losses[-1] < losses[0]  # it learns something


@pytest.mark.slow
def test_the_bundled_config_runs(train_store, tmp_path):
    """docs/training.md's example: the bundled usleep-small config, cut to two steps."""
    config = TrainConfig.load("usleep-small").model_copy(update={"max_steps": 2, "val_every": 2})
    result = train(config, train_store, tmp_path / "run", progress=False)
    assert result.finished and result.last_validation["n_nights"] == 1
