"""One trial in its own process: read ``trial.json``, run the objective, write ``outcome.json``.

The process never touches the ledger (opening one costs ~0.6 s); the worker that started it
records the outcome. A watchdog thread ends the process when that worker dies, so a retry
never shares its folder with an orphan.

Objectives are ``module:function`` names taking a `TrialContext` and returning a dict with
``value`` (the objective) and any other metrics; ``report(step, value)`` publishes
intermediate values (the pruner reads them from ``run/metrics.jsonl``).
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medscale.atomic import write_json_atomic

__all__ = ["TrialContext", "TrialInterrupted", "run_trial_process"]

#: exit status of a trial stopped by SIGTERM (pruned, or its allocation ending)
EXIT_INTERRUPTED = 3


class TrialInterrupted(Exception):
    """The objective stopped early on SIGTERM (a checkpoint was written)."""


@dataclass(frozen=True)
class TrialContext:
    """What an objective gets: the campaign's choices for this trial."""

    key: str
    assignment: dict[str, Any]
    params: dict[str, Any]
    seed: int
    trial_dir: Path
    spec: dict[str, Any]
    spec_folder: Path
    campaign_dir: Path
    metric: str
    devices: tuple[int, ...]
    job: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return self.trial_dir / "run"

    def report(self, step: int, value: float) -> None:
        """Publish an intermediate value (what the pruner judges)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"kind": "val", "step": step, self.metric: value}) + "\n")


def _watch_parent(worker_pid: int) -> None:
    while True:
        time.sleep(0.5)
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            os._exit(137)


def _peak_device_mb() -> float | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def run_trial_process(trial_dir: str, worker_pid: int) -> None:
    """The trial process's body (forkserver target, or ``python -m medscale.campaign.trial``)."""
    trial_dir_path = Path(trial_dir)
    job = json.loads((trial_dir_path / "trial.json").read_text())
    if job["devices"]:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in job["devices"])
    elif job.get("cpu_only"):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if job.get("cpu_threads"):  # a trial uses its CPU share, not every core of the machine
        os.environ["OMP_NUM_THREADS"] = str(job["cpu_threads"])
        if "torch" in sys.modules:  # preloaded by the fork server: set its pools directly
            sys.modules["torch"].set_num_threads(job["cpu_threads"])
    (trial_dir_path / "pid").write_text(f"{os.getpid()}\n")
    threading.Thread(target=_watch_parent, args=(worker_pid,), daemon=True).start()
    log = open(trial_dir_path / "trial.log", "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    started = time.perf_counter()
    outcome: dict[str, Any] = {"attempt": job["attempt"]}
    status = 0
    try:
        module_name, _, function_name = job["objective"].partition(":")
        objective = getattr(importlib.import_module(module_name), function_name)
        context = TrialContext(
            key=job["key"],
            assignment=job["assignment"],
            params=job["params"],
            seed=job["seed"],
            trial_dir=trial_dir_path,
            spec=job["spec"],
            spec_folder=Path(job["spec_folder"]),
            campaign_dir=Path(job["campaign_dir"]),
            metric=job["metric"],
            devices=tuple(job["devices"]),
            job=job,
        )
        result = objective(context)
        outcome["value"] = float(result["value"])
        outcome["metrics"] = {k: v for k, v in result.items() if k != "value"}
    except TrialInterrupted as exc:
        outcome["interrupted"] = str(exc)
        status = EXIT_INTERRUPTED
    except BaseException:
        outcome["error"] = traceback.format_exc()
        print(outcome["error"], file=sys.stderr)
        status = 1
    outcome["wall_s"] = round(time.perf_counter() - started, 4)
    outcome["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    outcome["peak_device_mb"] = _peak_device_mb()
    write_json_atomic(trial_dir_path / "outcome.json", outcome, indent=1, default=str)
    sys.stdout.flush()
    sys.exit(status)  # not os._exit: the exit handlers free multiprocessing semaphores (tqdm's)


if __name__ == "__main__":
    run_trial_process(sys.argv[1], int(sys.argv[2]))
