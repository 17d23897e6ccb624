"""Where a campaign's workers run: ``local`` (a pool of slots here), ``slurm`` (an sbatch
array of workers) or ``ray`` (Ray tasks). Every executor runs the same `Worker` loop against
the same ledger, so they can be mixed, and a campaign started on one resumes on another.

SLURM and Ray workers share the ledger: a ``journal:`` or ``file://`` ledger on a file system
every node sees, or PostgreSQL.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

from medscale.campaign.engine import Campaign
from medscale.campaign.spec import CampaignSpec
from medscale.campaign.worker import ProgressBar, Worker, install_stop_handler

__all__ = ["EXECUTORS", "run_campaign", "run_worker", "worker_script"]

Executor = Literal["local", "slurm", "ray"]
EXECUTORS = ("local", "slurm", "ray")


def load_spec(spec_path: str | Path, store: str | Path | None = None) -> CampaignSpec:
    """The spec, on ``store`` when given (``--store``) instead of the spec's own."""
    spec = CampaignSpec.load(spec_path)
    return spec if store is None else spec.with_store(store)


def run_worker(
    spec_path: str | Path,
    campaign_dir: str | Path,
    *,
    ledger: str | None,
    slots: int | None,
    store: str | Path | None = None,
) -> int:
    """One worker (``medscale campaign worker``): run trials until none is left."""
    campaign = Campaign(load_spec(spec_path, store), campaign_dir, ledger=ledger)
    ids = [os.environ.get(v) for v in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")]
    name = f"{socket.gethostname()}:{os.getpid()}" + (f":slurm-{ids[0]}_{ids[1]}" if ids[0] else "")
    left = slurm_time_left_s()
    deadline = None if left is None else time.monotonic() + left
    worker = Worker(campaign, slots=slots, name=name, deadline=deadline)
    install_stop_handler(worker)
    return worker.run()


def parse_time_left(text: str) -> float | None:
    """Seconds in squeue's ``%L`` (``[days-]hours:minutes:seconds``, ``minutes:seconds``);
    None for ``UNLIMITED``, ``NOT_SET`` or anything else."""
    days, _, clock = text.strip().rpartition("-")
    parts = clock.split(":")
    if (
        not 1 <= len(parts) <= 3
        or not all(p.isdigit() for p in parts)
        or (days and not days.isdigit())
    ):
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return seconds + int(days or 0) * 86400


def slurm_time_left_s() -> float | None:
    """The time left in this SLURM job (None outside SLURM, or without a limit)."""
    job = os.environ.get("SLURM_JOB_ID")
    squeue = shutil.which("squeue")
    if not job or squeue is None:
        return None
    done = subprocess.run(
        [squeue, "-h", "-j", job, "-o", "%L"], capture_output=True, text=True, check=False
    )
    return parse_time_left(done.stdout) if done.returncode == 0 else None


def worker_script(
    campaign: Campaign, spec_path: str | Path, *, python: str = sys.executable
) -> str:
    """An sbatch array script: ``slurm.tasks`` workers of ``execution.slots`` slots each."""
    from medscale.launch.slurm import sbatch_header
    from medscale.train.config import SlurmConfig

    slurm = campaign.spec.model.slurm
    resources = SlurmConfig(
        partition=slurm.partition,
        account=slurm.account,
        time=slurm.time,
        cpus_per_task=slurm.cpus_per_task,
        gpus_per_node=slurm.gpus_per_task,  # one task per allocation: per node = per task
        mem=slurm.mem,
        extra_sbatch=slurm.extra_sbatch,
    )
    output = campaign.folder / "slurm" / "worker-%A_%a.out"
    lines = sbatch_header(resources, f"ms-{campaign.spec.name}", output, ntasks_per_node=None)
    lines.append(f"#SBATCH --array=0-{slurm.tasks - 1}")
    # SIGTERM reaches the worker 60 s before the time limit: running trials checkpoint and
    # are retried (resuming) by the next worker.
    lines += ["#SBATCH --signal=B:TERM@60", "set -euo pipefail", *slurm.setup]
    command = [
        python, "-m", "medscale.cli.main", "campaign", "worker", str(Path(spec_path).resolve()),
        "--dir", str(campaign.folder), "--ledger", campaign.ledger.url,
        "--slots", str(campaign.execution.slots),
    ]  # fmt: skip
    if campaign.spec.store_path is not None:
        command += ["--store", str(campaign.spec.store_path)]
    lines.append("exec " + " ".join(shlex.quote(c) for c in command))
    return "\n".join(lines) + "\n"


def _run_slurm(campaign: Campaign, spec_path: str | Path, progress: bool) -> dict[str, Any]:
    from medscale.launch import slurm as slurm_launch

    (campaign.folder / "slurm").mkdir(exist_ok=True)
    script = worker_script(campaign, spec_path)
    job_id = slurm_launch.submit(script, campaign.folder / "slurm" / "workers.sbatch")
    campaign.event("slurm_submit", job_id=job_id, tasks=campaign.spec.model.slurm.tasks)
    bar = ProgressBar(campaign, progress)
    state = slurm_launch.wait_for_job(job_id, poll_s=1.0, on_poll=bar.update)
    return {"executor": "slurm", "job_id": job_id, "states": state.states}


def _ray_worker(
    spec_path: str, store: str | None, campaign_dir: str, ledger: str, slots: int, index: int
) -> int:
    campaign = Campaign(load_spec(spec_path, store), campaign_dir, ledger=ledger)
    worker = Worker(campaign, slots=slots, name=f"{socket.gethostname()}:{os.getpid()}:ray-{index}")
    return worker.run()


def _run_ray(campaign: Campaign, spec_path: str | Path, progress: bool) -> dict[str, Any]:
    from medscale.launch.ray import connect
    from medscale.train.config import RayConfig

    workers = campaign.spec.model.ray
    config = RayConfig(
        address=workers.address,
        num_workers=workers.workers,
        cpus_per_worker=workers.cpus_per_worker,
    )
    with connect(config):
        import ray

        task = ray.remote(
            num_cpus=workers.cpus_per_worker, num_gpus=workers.gpus_per_worker, max_retries=0
        )(_ray_worker)
        refs = [
            task.remote(
                str(Path(spec_path).resolve()),
                None if campaign.spec.store_path is None else str(campaign.spec.store_path),
                str(campaign.folder), campaign.ledger.url,
                campaign.execution.slots, i,
            )
            for i in range(workers.workers)
        ]  # fmt: skip
        poll = ProgressBar(campaign, progress).update
        pending = list(refs)
        while pending:
            _, pending = ray.wait(pending, timeout=1.0)
            poll()
        ran = ray.get(refs)
    return {"executor": "ray", "trials_per_worker": ran}


def run_campaign(
    spec_path: str | Path,
    campaign_dir: str | Path | None = None,
    *,
    executor: Executor = "local",
    ledger: str | None = None,
    slots: int | None = None,
    store: str | Path | None = None,
    progress: bool = True,
) -> tuple[Campaign, dict[str, Any]]:
    """Run (or resume) the campaign of ``spec_path``; return it and what the executor said.

    Every trial's config is validated first (`Campaign.prepare`), so a bad spec fails before
    anything runs. Rerunning the same command resumes a stopped campaign.
    """
    from medscale.errors import SpecError

    if executor not in EXECUTORS:
        raise SpecError(f"executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    spec = load_spec(spec_path, store)
    folder = Path(campaign_dir) if campaign_dir else default_folder(spec)
    campaign = Campaign(spec, folder, ledger=ledger)
    campaign.prepare()
    if (
        spec.model.execution.ranks_per_trial == "auto"
        and not (campaign.folder / "estimate.json").is_file()
    ):
        from medscale.campaign.estimate import estimate

        estimate(campaign)  # the ranks-per-trial rule needs a calibrated step time
    if executor == "local":
        worker = Worker(campaign, slots=slots)
        install_stop_handler(worker)
        return campaign, {"executor": "local", "trials_run": worker.run(progress=progress)}
    if executor == "slurm":
        return campaign, _run_slurm(campaign, spec_path, progress)
    return campaign, _run_ray(campaign, spec_path, progress)


def default_folder(spec: CampaignSpec) -> Path:
    """``campaigns/<name>`` beside the spec file."""
    return spec.folder / "campaigns" / spec.name
