"""`cross_validate`: k-fold or leave-one-subject-out cross-validation of one training config.

Each fold trains the config on the other folds' subjects (no validation subset: the last
checkpoint is the model) and predicts its own subjects' recordings; all folds' predictions are
pooled into one evaluation, beside baselines run on the same recordings, so every recording is
tested exactly once, by a model that never saw its subject.

The campaign lives in one folder::

    OUT/fold-<i>/split.json   the fold's split (train / test subsets)
    OUT/fold-<i>/run/         the fold's training run
    OUT/folds.json            per fold: test recordings, train recording count, steps, seconds
    OUT/eval/                 metrics.json, per_recording.csv, per_dataset.csv, report.html

Folds whose run already finished are not trained again, and a run that was interrupted is
resumed from its last checkpoint, so a killed campaign continues where it stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from medscale.data.splits import load_split, make_kfold_splits, write_split
from medscale.errors import SpecError
from medscale.evaluate.results import EvaluationResult, RecordingPrediction, evaluate_predictions
from medscale.evaluate.run import BASELINES, baseline_predictions
from medscale.store.store import Store
from medscale.train.config import TrainConfig

__all__ = ["cross_validate", "fold_config"]

FOLDS_FORMAT = "medscale-crossval-folds"


def fold_config(config: TrainConfig, split_file: str | Path) -> TrainConfig:
    """``config`` trained on ``split_file``'s ``train`` subset, without validation."""
    data = config.to_dict()
    data["split"] = {
        **data["split"],
        "file": str(Path(split_file).resolve()),
        "train_subset": "train",
        "val_subset": None,
    }
    data["data_fraction"] = 1.0
    return TrainConfig.from_dict(data, f"cross-validation config for {split_file}")


def _finished(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``result.json`` when it says the run finished, else None.

    The trainer deletes ``result.json`` when a run starts or resumes and writes it when `train`
    returns (``finished`` is false after a SIGTERM), so a run killed outright has none; one
    killed after its final checkpoint resumes at ``max_steps`` and stops at once.
    """
    path = run_dir / "result.json"
    if not path.is_file() or not (run_dir / "checkpoints" / "last.pt").is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except ValueError:
        return None
    return result if result.get("finished") is True else None


def _check_same_config(config: TrainConfig, store: Store, run_dir: Path) -> None:
    """Refuse to reuse a fold's run that was trained with another config, split or store."""
    from medscale.train.manifest import file_sha256

    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        return
    expected = config.config_hash(
        {
            "split_sha256": file_sha256(config.split.file),
            "store_content_hash": store.content_hash(),
        }
    )
    if json.loads(manifest_path.read_text()).get("config_hash") != expected:
        raise SpecError(
            f"{run_dir} was trained with another config (or split, or store content) than this "
            "cross-validation asks for; use a new output folder"
        )


def _train_fold(config: TrainConfig, store: Store, run_dir: Path) -> dict[str, Any]:
    """Train (or resume, or skip) one fold's run; its summary for ``folds.json``."""
    from medscale.train.trainer import train

    _check_same_config(config, store, run_dir)
    done = _finished(run_dir)
    if done is not None:
        return {"step": int(done["step"]), "trained_now": False, "stopped": done["stopped"]}
    resume = (run_dir / "manifest.json").is_file() or (run_dir / "checkpoints").is_dir()
    result = train(config, store, run_dir, resume=resume, progress=False)
    if not result.finished:
        raise SpecError(
            f"{run_dir}: training stopped at step {result.step} ({result.stopped}); run "
            "cross_validate again to resume it"
        )
    return {"step": result.step, "trained_now": True, "stopped": result.stopped}


def _fold_seconds(run_dir: Path) -> float | None:
    """Training seconds over every call of the run: the last ``elapsed_s`` the metrics log
    holds per call (it restarts at each resume)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    total, previous = 0.0, 0.0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("kind") != "train" or record.get("elapsed_s") is None:
            continue
        elapsed = float(record["elapsed_s"])
        if elapsed < previous:  # a resumed call starts its clock again
            total += previous
        previous = elapsed
    return round(total + previous, 3)


def cross_validate(
    store: Store | str | Path,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    k: int | None = None,
    seed: int = 0,
    baselines: tuple[str, ...] | list[str] = ("yasa",),
    wake_margin_min: float | None = None,
    n_boot: int = 1000,
    progress: bool = True,
) -> tuple[EvaluationResult, dict[str, Path]]:
    """Cross-validate ``config`` on ``store`` into ``out_dir``; return the pooled evaluation
    and the paths `EvaluationResult.write` wrote (plus ``folds.json``).

    ``k=None`` is leave-one-subject-out (one fold per subject); otherwise ``k`` subject-level
    folds from `make_kfold_splits` with ``seed``. Each fold trains ``config`` on its ``train``
    subset without validation and predicts its ``test`` subset with the last checkpoint.
    ``baselines`` (e.g. ``("yasa",)``) are run on the same recordings and scored beside it.
    Rerunning on the same ``out_dir`` skips finished folds and resumes interrupted ones.
    """
    import torch
    from tqdm.auto import tqdm

    from medscale.data.torch_data import EvalNights
    from medscale.evaluate.inference import predict_nights
    from medscale.train.trained import load_trained_model

    baselines = tuple(baselines)
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise SpecError(f"unknown baseline(s) {unknown}; known: {list(BASELINES)}")
    store = store if isinstance(store, Store) else Store(store, read_only=True)
    out = Path(out_dir)
    n_subjects = len({(info.dataset, info.subject) for info in store.recordings()})
    n_folds = n_subjects if k is None else k
    splits = make_kfold_splits(store, n_folds, seed=seed, fractions=(1.0,))
    out.mkdir(parents=True, exist_ok=True)

    predictions: list[RecordingPrediction] = []
    folds: list[dict[str, Any]] = []
    started = time.perf_counter()
    bar = tqdm(
        total=len(splits),
        disable=not progress,
        unit="fold",
        dynamic_ncols=True,
        desc="loso" if k is None else f"{n_folds}-fold",
    )
    try:
        for i, split in enumerate(splits):
            fold_dir = out / f"fold-{i}"
            split_path = fold_dir / "split.json"
            if split_path.is_file():
                # An earlier campaign's split: the same folds, or this is another campaign.
                old = load_split(split_path, store)
                if old.subsets != split.subsets:
                    raise SpecError(
                        f"{split_path} holds other folds than k={n_folds}, seed={seed} give; "
                        "use a new output folder"
                    )
            else:
                write_split(split, split_path)
            run_dir = fold_dir / "run"
            fold_start = time.perf_counter()
            summary = _train_fold(fold_config(config, split_path), store, run_dir)
            trained = load_trained_model(run_dir, which="last")
            nights = EvalNights(store, trained.config.data, recordings=split.subsets["test"])
            predicted = predict_nights(trained.model, nights, torch.device("cpu"))
            missing = sorted(set(split.subsets["test"]) - set(predicted))
            if missing:
                raise SpecError(f"fold {i}: no prediction for test recording(s) {missing}")
            predictions += [
                RecordingPrediction(key, key.split("/", 1)[0], night.y_true, night.probabilities)
                for key, night in predicted.items()
            ]
            folds.append(
                {
                    "fold": i,
                    "test": split.subsets["test"],
                    "n_train_recordings": len(split.subsets["train"]),
                    "steps": summary["step"],
                    "stopped": summary["stopped"],
                    "trained_now": summary["trained_now"],
                    "train_seconds": _fold_seconds(run_dir),
                    "fold_seconds_this_call": round(time.perf_counter() - fold_start, 3),
                    "run": str(run_dir.relative_to(out)),
                }
            )
            bar.update(1)
    finally:
        bar.close()

    keys = [p.key for p in predictions]
    if len(set(keys)) != len(keys):
        raise SpecError("a recording was tested in more than one fold")  # folds overlap
    result = evaluate_predictions(
        predictions,
        wake_margin_min=wake_margin_min,
        n_boot=n_boot,
        baselines=baseline_predictions(store, predictions, tuple(baselines)),
        name=config.model,
    )
    kind = "leave-one-subject-out" if k is None else f"{n_folds}-fold"
    paths = result.write(
        out / "eval",
        title=f"medscale cross-validation: {config.model}, {kind} ({len(splits)} folds)",
    )
    folds_path = out / "folds.json"
    folds_path.write_text(
        json.dumps(
            {
                "format": FOLDS_FORMAT,
                "kind": kind,
                "k": n_folds,
                "seed": seed,
                "model": config.model,
                "store_content_hash": splits[0].store_content_hash,
                "baselines": list(baselines),
                "seconds_this_call": round(time.perf_counter() - started, 3),
                "folds": folds,
            },
            indent=1,
        )
        + "\n"
    )
    return result, {**paths, "folds.json": folds_path}
