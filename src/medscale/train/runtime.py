"""The process-level machinery under `medscale.train.Trainer`: seeding and RNG state,
deterministic kernels, signal handling, and the stack watchdog for hung collectives."""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import random
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class Signals:
    """SIGTERM: checkpoint at the next step boundary and stop. SIGUSR1: checkpoint, go on."""

    def __init__(self) -> None:
        self.stop: str | None = None
        self.checkpoint = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.checkpoint = True
        if signum == signal.SIGTERM:
            self.stop = "SIGTERM"

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.warning("train() runs outside the main thread: SIGTERM/SIGUSR1 not handled")
            return
        for name in ("SIGTERM", "SIGUSR1"):
            sig = getattr(signal, name, None)
            if sig is not None:
                self._old[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


class StackWatchdog:
    """Under DDP, a step that takes longer than the collective timeout (a peer died or hangs)
    dumps every thread's stack to ``stacks/rank<r>.txt`` before the collective fails."""

    def __init__(self, path: Path | None, timeout_s: float) -> None:
        self.path, self.timeout_s, self.file = path, timeout_s, None

    def arm(self) -> None:
        if self.path is None:
            return
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a")  # noqa: SIM115 (held open for faulthandler)
        faulthandler.dump_traceback_later(self.timeout_s, repeat=False, file=self.file)

    def close(self) -> None:
        if self.file is not None:
            faulthandler.cancel_dump_traceback_later()
            self.file.close()
            self.file = None


def rng_state() -> dict[str, Any]:
    """torch's, numpy's, python's (and CUDA's) global RNG states, as checkpointable tensors
    and plain values."""
    import torch

    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved."""
    import torch

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def rank_seed(seed: int, rank: int) -> int:
    """A per-rank seed for dropout and other draws after the (shared) initialisation."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def determinism(enabled: bool, device_type: str):
    """Deterministic kernels for the run; the process's previous settings come back after."""
    import torch

    old = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if enabled:
        if device_type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[1], old[2]


def agree(flags: list[bool], device: Any) -> list[bool]:
    """Every rank's flags OR-ed together, so that all ranks stop and checkpoint alike."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]
