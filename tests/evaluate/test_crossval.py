"""Cross-validation: every recording tested once, the folds file, resuming a campaign, and
leave-one-subject-out on the real DREAMS excerpts beside YASA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medscale.errors import SpecError
from medscale.evaluate.crossval import cross_validate, fold_config
from medscale.ingest import ingest
from medscale.store.store import Store
from medscale.synth import synthesize_nights
from medscale.train.config import TrainConfig

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cv-store")
    synthesize_nights(root / "nights", 3, seed=5, duration_h=0.5, progress=False)
    ingest("synthetic", root / "nights", root / "store", progress=False)
    return root / "store"


def tiny_config(**overrides) -> TrainConfig:
    """A depth-3 U-Sleep on one EEG channel (one channel combination per night): 3 steps."""
    data = {
        "model": "usleep-small",
        "model_kwargs": {"depth": 3, "init_filters": 4},
        "data": {
            "sampling": {
                "window_epochs": 2,
                "samples_per_epoch": 8,
                "channel_groups": [{"name": "eeg", "names": ["EEG C4-M1"]}],
            },
            "eval_chunk_epochs": 60,
        },
        "batch_size": 2,
        "max_steps": 3,
        "checkpoint_every": 1,
        "log_every": 1,
        "seed": 1,
        **overrides,
    }
    return TrainConfig.from_dict(data)


def run_cv(store: Path, out: Path, **kwargs):
    kwargs = {"baselines": (), "n_boot": 20, "progress": False, **kwargs}
    config = kwargs.pop("config", tiny_config())
    result, paths = cross_validate(store, config, out, **kwargs)
    return result, paths, json.loads(paths["folds.json"].read_text())


@pytest.fixture(scope="module")
def campaign(synth_store, tmp_path_factory):
    """One leave-one-subject-out campaign on 3 synthetic subjects (later tests rerun it)."""
    out = tmp_path_factory.mktemp("cv") / "loso"
    result, paths, folds = run_cv(synth_store, out)
    return out, result, paths, folds


def _checkpoint_mtimes(out: Path) -> dict[str, int]:
    return {
        str(p.relative_to(out)): p.stat().st_mtime_ns
        for p in sorted(out.glob("fold-*/run/checkpoints/last.pt"))
    }


def test_fold_config_trains_on_the_split_file_without_validation(tmp_path):
    config = fold_config(tiny_config(data_fraction=0.5), tmp_path / "split.json")
    assert config.split.file == str((tmp_path / "split.json").resolve())
    assert config.split.train_subset == "train"
    assert config.split.val_subset is None
    assert config.data_fraction == 1.0


def test_loso_tests_each_recording_exactly_once(synth_store, campaign):
    out, result, paths, folds = campaign
    keys = sorted(info.key for info in Store(synth_store, read_only=True).recordings())
    assert len(keys) == 3

    assert folds["kind"] == "leave-one-subject-out" and folds["k"] == 3
    tested = [key for fold in folds["folds"] for key in fold["test"]]
    assert sorted(tested) == keys  # each recording tested exactly once
    for fold in folds["folds"]:
        assert len(fold["test"]) == 1
        assert fold["n_train_recordings"] == 2
        assert fold["steps"] == 3 and fold["trained_now"] is True
        assert fold["train_seconds"] > 0
        split = json.loads((out / f"fold-{fold['fold']}" / "split.json").read_text())
        assert split["subsets"]["test"] == fold["test"]
        assert not set(split["subsets"]["train"]) & set(fold["test"])
        run = out / f"fold-{fold['fold']}" / "run"
        assert json.loads((run / "result.json").read_text())["finished"] is True
        assert '"kind": "val"' not in (run / "metrics.jsonl").read_text()  # no validation

    assert result.models == ["usleep-small"]
    assert result.pooled["usleep-small"]["n_recordings"] == 3
    assert sorted(r["key"] for r in result.per_recording) == keys
    assert set(json.loads(paths["metrics.json"].read_text())["models"]) == {"usleep-small"}
    assert paths["report.html"].is_file()


def test_a_rerun_trains_no_finished_fold_again(synth_store, campaign):
    out, result, _, _ = campaign
    before = _checkpoint_mtimes(out)
    assert len(before) == 3
    again, _, folds = run_cv(synth_store, out)
    assert _checkpoint_mtimes(out) == before
    assert [f["trained_now"] for f in folds["folds"]] == [False] * 3
    assert [f["steps"] for f in folds["folds"]] == [3] * 3
    assert np.array_equal(again.confusion["usleep-small"], result.confusion["usleep-small"])


def test_an_interrupted_fold_is_resumed(synth_store, campaign):
    out, result, _, _ = campaign
    kept = (out / "fold-0" / "run" / "checkpoints" / "last.pt").stat().st_mtime_ns
    # Fold 1 as if killed after its last checkpoint: the trainer writes result.json on return.
    (out / "fold-1" / "run" / "result.json").unlink()
    again, _, folds = run_cv(synth_store, out)
    assert [f["trained_now"] for f in folds["folds"]] == [False, True, False]
    assert [f["steps"] for f in folds["folds"]] == [3, 3, 3]
    assert (out / "fold-0" / "run" / "checkpoints" / "last.pt").stat().st_mtime_ns == kept
    manifest = json.loads((out / "fold-1" / "run" / "manifest.json").read_text())
    assert [r["step"] for r in manifest["run"]["resumes"]] == [3]
    assert np.array_equal(again.confusion["usleep-small"], result.confusion["usleep-small"])


def test_another_config_or_other_folds_are_refused_on_a_campaign(synth_store, campaign):
    out = campaign[0]
    with pytest.raises(SpecError, match="another config"):
        run_cv(synth_store, out, config=tiny_config(max_steps=4))
    with pytest.raises(SpecError, match="other folds"):
        run_cv(synth_store, out, k=2)


def test_unknown_baseline_is_refused(synth_store, tmp_path):
    with pytest.raises(SpecError, match="unknown baseline"):
        run_cv(synth_store, tmp_path, baselines=("nope",))


@pytest.mark.slow
def test_two_fold_on_dreams_tests_every_excerpt_beside_yasa(shared_data, tmp_path):
    """The light form of benchmarks/loso_dreams.py (one fold per subject, 100 steps: kappa
    0.27 [0.14, 0.38], docs/benchmarks.md): the real excerpts ingested, 2 subject folds of 20
    steps of batch 4, every excerpt predicted by a model that never saw its subject, YASA
    beside it on the same excerpts. 20 steps teach the model little; its skill is the
    benchmark's claim."""
    source = shared_data / "dreams_spindles"
    if not source.is_dir():
        pytest.skip(f"{source} is absent")
    ingest("dreams", source, tmp_path / "store", progress=False)
    config = TrainConfig.load("usleep-small-eeg").model_copy(
        update={"max_steps": 20, "batch_size": 4}
    )
    result, paths = cross_validate(
        tmp_path / "store", config, tmp_path / "cv", k=2, n_boot=50, progress=False
    )

    assert result.models == ["usleep-small", "yasa"]
    for name in result.models:
        assert result.pooled[name]["n_recordings"] == 8
        assert result.confusion[name].sum() == 480  # every scored epoch of the 8 excerpts
    folds = json.loads(paths["folds.json"].read_text())["folds"]
    assert len(folds) == 2 and sorted(len(f["test"]) for f in folds) == [4, 4]
    assert all(f["steps"] == 20 and f["n_train_recordings"] == 4 for f in folds)
    # YASA's pretrained classifier on the real signals: kappa 0.49 [0.29, 0.65] here. Signals
    # in the wrong unit, rate or channel would put it near 0.
    assert result.pooled["yasa"]["kappa"] > 0.3, result.pooled["yasa"]
