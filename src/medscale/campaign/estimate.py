"""`estimate`: time one short calibration trial and project the campaign's device-hours, wall
time and cost before anything expensive runs.

A training trial's time is taken as a fixed part (process start, imports, data index,
testing) plus a part proportional to its steps: the calibration trains the first key for
``calibration_steps`` steps and scales the training part to ``max_steps``. Other objectives
run one whole trial.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from pathlib import Path
from typing import Any

from medscale.atomic import write_json_atomic
from medscale.campaign.engine import Campaign
from medscale.campaign.processes import start_trial_process, trial_forkserver, wait_trial_process
from medscale.errors import SpecError

__all__ = ["estimate"]

#: starting and ending one trial process from a warm fork server, with its ledger operations
#: (docs/benchmarks.md: 64 ms per trivial trial, of which ~46 ms the process itself)
TRIAL_START_S = 0.05


def estimate(
    campaign: Campaign, *, slots: int | None = None, calibration_steps: int = 10
) -> dict[str, Any]:
    """Run the calibration trial and return (and write to ``estimate.json``) the projection."""
    spec = campaign.spec
    jobs = campaign.prepare()
    if spec.is_bayesian:
        space = spec.model.design.bayesian.params  # type: ignore[union-attr]
        params = {
            name: (p.choices[0] if p.choices else _middle(p.low, p.high, p.log, p.type))
            for name, p in space.items()
        }
        key = "bo:0"
        doc = campaign.job_document(key, {}, params, 1, ())
    else:
        key = next(iter(campaign.planned))
        doc = campaign.job_document(
            key, campaign.planned[key].assignment, jobs[key]["params"], 1, ()
        )
    max_steps = None
    configs = doc["folds"] if "folds" in doc else [doc["config"]] if "config" in doc else []
    if configs:  # a training: calibrate on fewer steps (every fold of a Bayesian × k-fold)
        configs = copy.deepcopy(configs)
        max_steps = int(configs[0]["max_steps"])
        calibration_steps = max(1, min(calibration_steps, max_steps))
        for config in configs:
            config["max_steps"] = calibration_steps
        doc.update({"folds": configs} if "folds" in doc else {"config": configs[0]})
    # started as the campaign's trials will be: from the fork server with their modules loaded
    ctx = trial_forkserver(campaign.objective)
    if configs:
        # An untimed 1-step run first: the first training in a process pays one-off costs
        # (bytecode, caches, lazy imports) that later trials do not (×2.3 when timed: CI).
        warm = copy.deepcopy(doc)
        for config in warm["folds"] if "folds" in warm else [warm["config"]]:
            config["max_steps"] = 1
        _run_calibration(campaign.folder / "calibration-warm-up", warm, ctx)
    folder = campaign.folder / "calibration"
    started = time.perf_counter()
    exit_code = _run_calibration(folder, doc, ctx)
    wall = time.perf_counter() - started
    outcome = _outcome(folder)
    if "value" not in outcome:
        raise SpecError(
            f"the calibration trial ({key}) failed (exit {exit_code}); see {folder / 'trial.log'}"
            + (f":\n{outcome['error']}" if "error" in outcome else "")
        )
    # The trial's own time (measured in its process), plus the start of one trial process
    # from a warm fork server.
    process_wall = wall
    wall = float(outcome["wall_s"]) + TRIAL_START_S
    metrics = outcome.get("metrics") or {}
    calibration = {
        "key": key,
        "steps": calibration_steps if max_steps is not None else None,
        "max_steps": max_steps,
        "wall_s": round(wall, 3),
        "process_wall_s": round(process_wall, 3),
        "step_s": metrics.get("step_s"),
        "parameters": metrics.get("parameters"),
    }
    write_json_atomic(
        campaign.folder / "estimate.json", {"calibration": calibration}, indent=1, default=str
    )
    layout = campaign.layout(slots)  # ranks_per_trial: auto reads the calibration above
    fixed_s, train_s = wall, 0.0
    if max_steps is not None:
        train_s = float(metrics.get("train_seconds") or 0.0) * max_steps / calibration_steps
        fixed_s = wall - float(metrics.get("train_seconds") or 0.0)
    if layout.ranks > 1:  # the model of docs/scaling.md: compute split, all-reduce added
        from medscale.launch.scaling import Interconnect, ddp_speedup

        link = Interconnect(campaign.execution.link_gb_s * 1e9)
        step_s = float(metrics.get("step_s") or 0.0)
        grad_bytes = 4.0 * float(metrics.get("parameters") or 0)
        train_s *= 1.0 / ddp_speedup(step_s, grad_bytes, layout.ranks, link) if step_s else 1.0
    per_trial_wall = fixed_s + train_s
    # Testing scales with the test nights, which differ between folds: project each key's
    # testing from the calibration's seconds per night.
    test_s, nights = float(metrics.get("test_seconds") or 0.0), metrics.get("test_recordings")
    keys_nights = _test_nights(jobs) if nights and not spec.is_bayesian else []
    if keys_nights:
        per_night = test_s / float(nights)
        walls = [per_trial_wall - test_s + per_night * n_test for n_test in keys_nights]
        per_trial_wall = sum(walls) / len(walls)
    slots = layout.slots
    n = spec.n_trials()
    device_s = per_trial_wall * layout.held
    price = spec.model.cost.per_device_hour
    result = {
        "campaign": spec.name,
        "trials": n,
        "calibration": calibration,
        "ranks_per_trial": layout.ranks,
        "per_trial": {
            "wall_s": round(per_trial_wall, 3),
            "device_s": round(device_s, 3),
            "cost": device_s / 3600 * price,
        },
        "slots": slots,
        "device_hours": n * device_s / 3600,
        "wall_hours": math.ceil(n / slots) * per_trial_wall / 3600,
        "cost": n * device_s / 3600 * price,
        "cost_unit": spec.model.cost.unit,
        "instance": spec.model.cost.instance,
        "device_kind": "GPU" if layout.gpus else "CPU",
    }
    budget = spec.model.budget
    result["over_budget"] = bool(
        (budget.max_cost is not None and result["cost"] > budget.max_cost)
        or (
            budget.max_device_hours is not None and result["device_hours"] > budget.max_device_hours
        )
    )
    write_json_atomic(campaign.folder / "estimate.json", result, indent=1, default=str)
    return result


def _test_nights(jobs: dict[str, dict[str, Any]]) -> list[int]:
    """Per fixed key: the number of test recordings in its split."""
    from medscale.data.splits import load_split

    sizes: dict[str, int] = {}
    out = []
    for job in jobs.values():
        split_file = (job.get("config") or {}).get("split", {}).get("file")
        if split_file is None:
            return []
        if split_file not in sizes:
            sizes[split_file] = len(load_split(split_file).subsets.get("test") or [])
        out.append(sizes[split_file])
    return out


def _run_calibration(folder: Path, doc: dict[str, Any], ctx: Any) -> int | None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_json_atomic(folder / "trial.json", doc, indent=1, default=str)
    return wait_trial_process(start_trial_process(folder, ctx))


def _middle(low: Any, high: Any, log: bool, kind: str) -> Any:
    value = math.sqrt(low * high) if log and low > 0 else (low + high) / 2
    return round(value) if kind == "int" else value


def _outcome(folder: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((folder / "outcome.json").read_text())
    except (OSError, ValueError):
        return {}
