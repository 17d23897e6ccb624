"""Training and ingestion on a real single-node SLURM cluster (slurmctld + slurmd + munge,
started by ``scripts/slurm-up.sh``): a 2-rank DDP job, an ingest job array, and a job
signalled as if preempted that checkpoints, requeues itself and resumes."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from medscale.ingest import ingest
from medscale.launch.slurm import job_state, wait_for_job
from medscale.launch.train import launch_training
from medscale.launch.units import slurm_runner
from medscale.store.store import Store
from medscale.synth import synthesize_nights
from medscale.train.config import SlurmConfig

from .conftest import (
    assert_same_weights,
    ddp_config,
    finish,
    torchrun,
    wait_for_train_step,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.real]

REPO = Path(__file__).resolve().parents[2]


def _log(out: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(out.glob("slurm-*.out")))


def test_two_rank_ddp_training_job(slurm_cluster, train_store, ddp_run, tmp_path):
    """sbatch → srun → torchrun → 2 ranks: the same weights, bit for bit, as the same
    2 ranks under torchrun directly."""
    config, reference = ddp_run
    out = tmp_path / "run"
    outcome = launch_training(config, str(train_store), out, launcher="slurm", nproc=2)
    assert outcome.job_id and (out / "train.sbatch").is_file()
    state = wait_for_job(outcome.job_id, timeout_s=300)
    assert state.ok, f"{state}\n{_log(out)}"
    result = json.loads((out / "result.json").read_text())
    assert result["finished"] and result["step"] == 12
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run"]["world_size"] == 2
    assert_same_weights(reference, out)


def test_ingest_job_array_gives_the_local_store_and_report(slurm_cluster, tmp_path):
    nights = tmp_path / "nights"
    synthesize_nights(nights, 3, seed=21, duration_h=0.25, progress=False)
    (nights / "not-a-recording.txt").write_text("stray file")
    local = ingest("synthetic", nights, tmp_path / "local", progress=False)
    runner = slurm_runner("synthetic", tmp_path / "jobs", SlurmConfig(cpus_per_task=1))
    on_slurm = ingest("synthetic", nights, tmp_path / "slurm", progress=False, runner=runner)
    assert on_slurm.ok, on_slurm.to_markdown()
    assert on_slurm.store_content_hash == local.store_content_hash
    assert [(u.recording_id, u.status) for u in on_slurm.units] == [
        (u.recording_id, u.status) for u in local.units
    ]
    assert on_slurm.unmatched_files == local.unmatched_files
    assert len(Store(tmp_path / "slurm").recordings()) == 3
    logs = list((tmp_path / "jobs").glob("ingest-*/ingest-*_*.out"))
    assert len(logs) == 3  # one array task a recording


def test_preempted_job_checkpoints_requeues_and_resumes(slurm_cluster, train_store, tmp_path):
    """SIGTERM to the batch shell mid-run (what --signal=B:TERM@N or a preemption sends):
    the ranks checkpoint, the job requeues itself, the second start resumes, and the run
    ends with the weights of an uninterrupted run."""
    config = write_config(
        tmp_path / "run.yaml",
        ddp_config(max_steps=80, val_every=1000, checkpoint_every=4),
    )
    reference = tmp_path / "reference"
    proc = torchrun(config, train_store, reference)
    text = finish(proc)
    assert proc.returncode == 0, text

    out = tmp_path / "preempted"
    outcome = launch_training(config, str(train_store), out, launcher="slurm", nproc=2)
    deadline = time.monotonic() + 600  # a hang guard only: a loaded machine starts ranks slowly
    while not (out / "metrics.jsonl").is_file():
        assert time.monotonic() < deadline, _log(out)
        time.sleep(0.1)

    class _Running:  # wait_for_train_step's view of a job still running
        def poll(self):
            return None if not job_state(outcome.job_id).done else 1

    wait_for_train_step(out, 6, _Running())
    subprocess.run(["scancel", "--signal=TERM", "--batch", outcome.job_id], check=True)
    state = wait_for_job(outcome.job_id, timeout_s=300)
    log = _log(out)
    assert state.ok, f"{state}\n{log}"
    assert state.restarts >= 1, log
    assert "requeueing to resume" in log and "run finished" in log, log
    resumes = json.loads((out / "manifest.json").read_text())["run"]["resumes"]
    assert len(resumes) == 1 and 4 <= resumes[0]["step"] < 80
    assert_same_weights(reference, out, steps=80)
