"""Objectives a campaign can run, and how a trial's training config is made.

``train`` (the default): train the base config with the trial's changes, then score the
last model on its split's ``test`` subset (whole nights, as ``medscale evaluate`` does).
``synthetic``: a cheap analytic objective for testing and benchmarking the orchestration
itself; its values are labelled synthetic in every report.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

from medscale.campaign.trial import TrialContext, TrialInterrupted
from medscale.errors import SpecError

__all__ = ["OBJECTIVES", "synthetic", "train_and_test", "trial_config"]

OBJECTIVES = {
    "train": "medscale.campaign.objectives:train_and_test",
    "synthetic": "medscale.campaign.objectives:synthetic",
}


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    node = data
    *parents, leaf = path.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SpecError(f"parameter {path!r}: {part!r} is not a section of the config")
        node = child
    node[leaf] = value


def trial_config(
    base: dict[str, Any],
    assignment: dict[str, Any],
    params: dict[str, Any],
    *,
    seed: int,
    split_file: Path,
    has_val: bool,
    leave_out_over: str | None,
) -> dict[str, Any]:
    """The training config dict of one trial (validated by `TrainConfig.from_dict` later).

    Grid and Bayesian parameters are dotted config paths (``optimizer.lr``); a left-out
    channel group is removed, a left-out channel is excluded from every group; a left-out
    subject or dataset is removed from training by the objective (see `train_and_test`).
    """
    data = copy.deepcopy(base)
    for path, value in params.items():
        _set_path(data, path, value)
    data["seed"] = seed
    data.setdefault("data", {}).pop("seed", None)
    left_out = assignment.get("leave_out", "all")
    if left_out != "all" and leave_out_over in ("channels", "channel_groups"):
        sampling = data["data"].setdefault("sampling", {})
        groups = sampling.get("channel_groups") or [
            {"name": "eeg", "types": ["EEG"]},
            {"name": "eog", "types": ["EOG"]},
        ]
        if leave_out_over == "channel_groups":
            groups = [g for g in groups if g["name"] != left_out]
        else:
            groups = [{**g, "exclude": [*g.get("exclude", []), left_out]} for g in groups]
        sampling["channel_groups"] = groups
    split = data.setdefault("split", {})
    split["file"] = str(split_file)
    split["train_subset"] = "train"
    if not has_val:
        split["val_subset"] = None
    if "fraction" in assignment:
        data["data_fraction"] = assignment["fraction"]
    return data


def _without(split_file: Path, recordings: set[str], out: Path) -> Path:
    """A copy of the split whose training recordings (and fractions) lack ``recordings``:
    the leave-one-subject/dataset-out arm trains without them."""
    from dataclasses import replace

    from medscale.data.splits import load_split, write_split

    split = load_split(split_file)
    subsets = {**split.subsets, "train": [r for r in split.subsets["train"] if r not in recordings]}
    fractions = {k: [r for r in v if r not in recordings] for k, v in split.fractions.items()}
    return write_split(replace(split, subsets=subsets, fractions=fractions), out)


def train_and_test(context: TrialContext) -> dict[str, Any]:
    """Train the trial's config (resuming its own run if one was interrupted), then score the
    last model on the split's ``test`` subset. A Bayesian × k-fold trial trains every fold
    (``run/fold-<i>``), reports the running mean after each, and returns the mean."""
    folds = context.job.get("folds")
    if not folds:
        return _train_and_test_one(context, context.job["config"], context.run_dir)
    values, outcomes = [], []
    for i, config in enumerate(folds):
        outcome = _train_and_test_one(context, config, context.run_dir / f"fold-{i}")
        outcomes.append(outcome)
        values.append(outcome["value"])
        context.report(i + 1, sum(values) / len(values))  # what the pruner judges
    return {
        "value": sum(values) / len(values),
        "fold_values": values,
        "steps": sum(o["steps"] for o in outcomes),
        "train_seconds": sum(o["train_seconds"] for o in outcomes),
        "step_s": outcomes[0]["step_s"],
        "parameters": outcomes[0]["parameters"],
        "ranks": outcomes[0]["ranks"],
        "test_recordings": sum(o["test_recordings"] for o in outcomes),
        "test_seconds": sum(o["test_seconds"] for o in outcomes),
    }


def _train_and_test_one(
    context: TrialContext, data: dict[str, Any], run_dir: Path
) -> dict[str, Any]:
    import torch

    from medscale.data.splits import load_split
    from medscale.data.torch_data import EvalNights
    from medscale.evaluate.inference import predict_nights
    from medscale.evaluate.results import RecordingPrediction, evaluate_predictions
    from medscale.store.store import Store
    from medscale.train.config import TrainConfig
    from medscale.train.trained import load_trained_model
    from medscale.train.trainer import train

    job = context.job
    store = Store(job["store"], read_only=True)
    if job.get("exclude_recordings"):
        drop = set(job["exclude_recordings"])
        out = context.trial_dir / "split.json"
        data["split"]["file"] = str(_without(Path(data["split"]["file"]), drop, out))
    config = TrainConfig.from_dict(data, f"trial {context.key}")
    resume = (run_dir / "manifest.json").is_file()
    ranks = int(job.get("ranks") or 1)
    if ranks > 1:
        step, train_seconds = _train_ddp(context, config, ranks, run_dir)
    else:
        result = train(config, store, run_dir, resume=resume, progress=False)
        if not result.finished:
            raise TrialInterrupted(f"stopped at step {result.step} ({result.stopped})")
        step, train_seconds = result.step, result.train_seconds
    tested_from = time.perf_counter()
    test = load_split(config.split.file).subsets.get("test") or []
    if not test:
        raise SpecError(f"trial {context.key}: its split has no 'test' recordings to score")
    trained = load_trained_model(run_dir, which="last")
    nights = EvalNights(store, trained.config.data, recordings=test)
    predicted = predict_nights(trained.model, nights, torch.device("cpu"))
    predictions = [
        RecordingPrediction(k, k.split("/", 1)[0], night.y_true, night.probabilities)
        for k, night in sorted(predicted.items())
    ]
    evaluation = evaluate_predictions(predictions, n_boot=200)
    pooled = evaluation.pooled["model"]
    metrics = {
        name: float(pooled[name])
        for name in ("kappa", "macro_f1", "accuracy")
        if isinstance(pooled.get(name), (int, float))
    }
    if context.metric not in metrics:
        raise SpecError(f"metric {context.metric!r} is not one of {sorted(metrics)}")
    return {
        "value": metrics[context.metric],
        **metrics,
        "steps": step,
        "train_seconds": train_seconds,
        "step_s": train_seconds / max(step, 1),
        "parameters": sum(p.numel() for p in trained.model.parameters()),
        "ranks": ranks,
        "test_recordings": len(predictions),
        "test_seconds": time.perf_counter() - tested_from,
    }


def _train_ddp(context: TrialContext, config: Any, ranks: int, run_dir: Path) -> tuple[int, float]:
    """Train under torchrun with ``ranks`` ranks on this trial's devices; SIGTERM is passed
    on (the ranks checkpoint), and torchrun dies with this process."""
    import ctypes
    import json
    import os
    import signal
    import subprocess

    from medscale.atomic import write_text_atomic
    from medscale.launch.torchrun import TORCHRUN_ENV, TorchrunPlan, torchrun_command

    config_path = context.trial_dir / "train.yaml"
    write_text_atomic(config_path, config.to_yaml())
    plan = TorchrunPlan(nproc_per_node=ranks, nnodes=1, rdzv_endpoint=None, rdzv_id="trial")
    command = torchrun_command(plan, config_path, context.job["store"], run_dir, quiet=True)
    libc = ctypes.CDLL(None, use_errno=True)

    def die_with_parent() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    proc = subprocess.Popen(command, env={**os.environ, **TORCHRUN_ENV}, preexec_fn=die_with_parent)
    signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signal.SIGTERM))
    code = proc.wait()
    result_path = run_dir / "result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if code != 0 or not result.get("finished"):
        if result and not result.get("finished"):
            raise TrialInterrupted(f"stopped at step {result.get('step')} (exit {code})")
        raise RuntimeError(f"torchrun with {ranks} ranks failed (exit {code}); see trial.log")
    return int(result["step"]), float(result.get("train_seconds_this_call") or 0.0)


def synthetic(context: TrialContext) -> dict[str, Any]:
    """A smooth analytic objective of ``x`` (and ``y``) plus seeded noise (synthetic).

    ``sleep_s`` in the params (or the spec's grid) makes each trial take that long, split
    over ``steps`` reported steps (for pruning tests); the trial with ``x == fail_at_x`` raises.
    """
    import random

    params = {**context.assignment, **context.params}
    steps = int(params.get("steps", 1))
    sleep_s = float(params.get("sleep_s", 0.0))
    rng = random.Random(context.seed)
    x, y = float(params.get("x", 0.0)), float(params.get("y", 0.0))
    if "fail_at_x" in params and x == float(params["fail_at_x"]):
        raise RuntimeError(f"synthetic failure of {context.key}")
    base = math.exp(-((x - 0.3) ** 2) - (y + 0.2) ** 2)
    fraction = float(params.get("fraction", 1.0))
    value = base * (0.5 + 0.5 * fraction**0.5)
    for step in range(1, steps + 1):
        if sleep_s:
            time.sleep(sleep_s / steps)
        context.report(step, value * step / steps)
    return {"value": value + rng.gauss(0.0, 0.01), "seed_echo": context.seed, "synthetic": True}
