"""A small synthetic store and helpers to run training ranks in real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from medscale.train import load_checkpoint
from medscale.train.metrics_log import TIMING_COLUMNS, read_records
from tests.train.conftest import tiny_config

#: One intra-op thread per rank: bits depend on the thread count (docs/scaling.md).
RANK_ENV = {"OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def ddp_config(**overrides: Any) -> dict[str, Any]:
    """The tiny U-Sleep with a global batch of 4 (2 a rank on 2 ranks), 12 steps crossing a
    data epoch, a checkpoint every 4 steps and validation every 3 (the last at step 12)."""
    config = tiny_config(max_steps=12, val_every=3, checkpoint_every=4, log_every=1)
    config["batch_size"] = 4
    config["data"]["sampling"]["samples_per_epoch"] = 32
    config["early_stopping"] = {"patience": None}
    config["split"] = {"val_fraction": 0.5, "test_fraction": 0.0}  # 2 train, 2 val nights
    config.update(overrides)
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def torchrun(
    config: Path, store: Path, out: Path, *extra_torchrun: str, nproc: int = 2
) -> subprocess.Popen:
    """``torchrun --standalone`` with ``nproc`` worker ranks, output captured."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={nproc}", *extra_torchrun]
    command += ["-m", "medscale.launch.worker", str(config), "--store", str(store)]
    command += ["--out", str(out), "--resume", "--quiet"]
    env = {**os.environ, **RANK_ENV, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out.decode(errors="replace")


@pytest.fixture(scope="session")
def ddp_run(train_store, tmp_path_factory) -> tuple[Path, Path]:
    """An uninterrupted 2-rank torchrun run of `ddp_config`: (config path, run folder)."""
    root = tmp_path_factory.mktemp("ddp")
    config = write_config(root / "run.yaml", ddp_config())
    out = root / "run"
    proc = torchrun(config, train_store, out)
    text = finish(proc)
    assert proc.returncode == 0, text
    return config, out


def wait_for_train_step(out: Path, step: int, proc) -> int:
    """Poll metrics.jsonl until a train record of ``step`` or later; bounded by the process
    (it ends after max_steps), not by seconds; pytest-timeout guards a hang."""
    while True:
        steps = [r["step"] for r in read_records(out / "metrics.jsonl") if r["kind"] == "train"]
        if steps and steps[-1] >= step:
            return steps[-1]
        assert proc.poll() is None, finish(proc)
        time.sleep(0.05)


def strip_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in records]


def assert_same_weights(a: Path, b: Path, steps: int = 12) -> None:
    import torch

    wa = load_checkpoint(a / "checkpoints" / "last.pt")
    wb = load_checkpoint(b / "checkpoints" / "last.pt")
    assert wa["step"] == wb["step"] == steps
    for name in wa["model"]:
        assert torch.equal(wa["model"][name], wb["model"][name]), name
    ra, rb = (json.loads((p / "result.json").read_text()) for p in (a, b))
    assert ra["weights_sha256"] == rb["weights_sha256"]
