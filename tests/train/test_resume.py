"""Resume is exact: a run killed at any step and resumed ends bit-identical (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")

from medscale.train import TrainConfig, load_checkpoint, train  # noqa: E402
from medscale.train.metrics_log import TIMING_COLUMNS, read_records  # noqa: E402

from .conftest import tiny_config  # noqa: E402

# 12 steps cross a data epoch (8 steps each); checkpoints every 4 steps, validations every 3:
# a kill after step 5 resumes from step 4 and must replay step 5 identically.
RESUME_CONFIG = tiny_config(max_steps=12, val_every=3, checkpoint_every=4, log_every=1)


@pytest.fixture(scope="module")
def uninterrupted(train_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    train(TrainConfig.from_dict(RESUME_CONFIG), train_store, out, progress=False)
    return out


def _same_run(a: Path, b: Path) -> None:
    wa = load_checkpoint(a / "checkpoints" / "last.pt")
    wb = load_checkpoint(b / "checkpoints" / "last.pt")
    assert wa["step"] == wb["step"] == 12
    assert list(wa["model"]) == list(wb["model"])
    for name in wa["model"]:
        assert torch.equal(wa["model"][name], wb["model"][name]), name
    for sa, sb in zip(
        wa["optimizer"]["state"].values(), wb["optimizer"]["state"].values(), strict=True
    ):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)

    def strip(records):
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in records]

    assert strip(read_records(a / "metrics.jsonl")) == strip(read_records(b / "metrics.jsonl"))
    ra, rb = (json.loads((p / "result.json").read_text()) for p in (a, b))
    assert ra["weights_sha256"] == rb["weights_sha256"]


def _start(config_path: Path, store: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "medscale.cli.main", "train", str(config_path)]
    cmd += ["--store", str(store), "--out", str(out), "--quiet", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_step(proc: subprocess.Popen, out: Path, step: int) -> int:
    """Poll metrics.jsonl until a train record of ``step`` or later; the step seen. Bounded by
    the process (it ends after max_steps), not by seconds; pytest-timeout guards a hang."""
    while True:
        steps = [r["step"] for r in read_records(out / "metrics.jsonl") if r["kind"] == "train"]
        if steps and steps[-1] >= step:
            return steps[-1]
        if proc.poll() is not None:
            pytest.fail(f"training ended early: {proc.stdout.read().decode()}")
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(uninterrupted, train_store, tmp_path):
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(RESUME_CONFIG))
    out = tmp_path / "killed"
    proc = _start(config_path, train_store, out)
    seen = _wait_for_step(proc, out, 5)
    proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: a real crash
    proc.wait(timeout=30)
    proc.stdout.close()
    assert seen < 12
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert 4 <= state["step"] <= seen

    result = train(TrainConfig.load(config_path), train_store, out, resume=True, progress=False)
    assert result.resumed_from_step == state["step"] and result.step == 12
    _same_run(uninterrupted, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["step"] for r in manifest["run"]["resumes"]] == [state["step"]]


@pytest.mark.slow
def test_sigterm_checkpoints_at_the_step_boundary_and_resume_via_the_cli(
    uninterrupted, train_store, tmp_path
):
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(RESUME_CONFIG))
    out = tmp_path / "terminated"
    proc = _start(config_path, train_store, out)
    _wait_for_step(proc, out, 2)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 3, output
    assert "stopped by SIGTERM; checkpoint saved: continue with --resume" in output
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert 2 <= state["step"] < 12
    assert json.loads((out / "result.json").read_text())["finished"] is False

    proc = _start(config_path, train_store, out, "--resume")
    output = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, output
    assert "max_steps at step 12" in output
    _same_run(uninterrupted, out)


def test_sigusr1_writes_a_checkpoint_and_training_goes_on(train_store, tmp_path, caplog):
    config = TrainConfig.from_dict(tiny_config(max_steps=3, checkpoint_every=100, val_every=100))
    steps_seen = []

    def on_train_record(record):
        steps_seen.append(record["step"])
        if record["step"] == 1:
            os.kill(os.getpid(), signal.SIGUSR1)  # handled at the step boundary

    from medscale.train import metrics_log

    original = metrics_log.MetricsLogger.write

    def write(self, record):
        original(self, record)
        if record["kind"] == "train":
            on_train_record(record)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(metrics_log.MetricsLogger, "write", write)
        result = train(config, train_store, tmp_path / "run", progress=False)
    assert result.finished and result.step == 3
    assert "signal: checkpoint written at step 1" in caplog.text
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # handlers are put back
