"""Trial processes: each trial runs in its own process, started from a fork server that has
the objective's modules preloaded (~20 ms) or as a fresh interpreter, and waited for,
terminated and read back here for :class:`medscale.campaign.worker.Worker` and
:func:`medscale.campaign.estimate.estimate`."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from medscale.campaign.objectives import OBJECTIVES

__all__ = [
    "alive",
    "exitcode",
    "join",
    "read_outcome",
    "start_trial_process",
    "terminate",
    "trial_forkserver",
    "wait_trial_process",
]


def _preload(objective: str) -> list[str]:
    modules = ["medscale.campaign.trial", objective.partition(":")[0]]
    if objective == OBJECTIVES["train"]:  # everything a training trial imports
        modules += [
            "torch",
            "medscale.train.trainer",
            "medscale.train.trained",
            "medscale.train.report",
            "medscale.data.torch_data",
            "medscale.evaluate.inference",
            "medscale.evaluate.results",
        ]
    # Not the main module: each child re-runs it as __mp_main__, and runpy warns when it is
    # already imported; medscale's entry points import little at the top.
    return modules


def trial_forkserver(objective: str) -> Any:
    """The fork-server context trials start from, with ``objective``'s modules preloaded.

    The fork server is one per process: one already running with other modules (started by
    an earlier campaign or estimate in this process) is restarted, or every trial of this
    campaign would import torch itself (seconds each, and `estimate` would time that)."""
    import multiprocessing.forkserver as forkserver

    preload = _preload(objective)
    server = getattr(forkserver, "_forkserver", None)
    running = getattr(server, "_forkserver_pid", None) is not None
    if (
        running
        and getattr(server, "_preload_modules", None) != preload
        and hasattr(server, "_stop")
    ):
        server._stop()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    # The server imports its modules in the background: wait for them with one empty child,
    # so that no trial's wall time (nor estimate's calibration) includes them.
    warm_up = context.Process(target=os.getpid)
    warm_up.start()
    warm_up.join()
    return context


def start_trial_process(trial_dir: Path, forkserver: Any | None) -> Any:
    """Start ``trial_dir``'s trial: from the fork server when given (~20 ms), else a fresh
    interpreter."""
    if forkserver is not None:
        from medscale.campaign.trial import run_trial_process

        proc = forkserver.Process(target=run_trial_process, args=(str(trial_dir), os.getpid()))
        proc.start()
        return proc
    return subprocess.Popen(
        [sys.executable, "-m", "medscale.campaign.trial", str(trial_dir), str(os.getpid())],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_trial_process(proc: Any) -> int | None:
    while alive(proc):
        join(proc, 0.5)
    return exitcode(proc)


def alive(proc: Any) -> bool:
    return proc.is_alive() if hasattr(proc, "is_alive") else proc.poll() is None


def join(proc: Any, timeout: float) -> None:
    if hasattr(proc, "join"):
        proc.join(timeout)
    else:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)


def exitcode(proc: Any) -> int | None:
    return proc.exitcode if hasattr(proc, "exitcode") else proc.returncode


def terminate(proc: Any) -> None:
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError, OSError):
        proc.terminate()


def read_outcome(trial_dir: Path, attempt: int) -> dict[str, Any]:
    path = trial_dir / "outcome.json"
    try:
        outcome = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return outcome if outcome.get("attempt") == attempt else {}
