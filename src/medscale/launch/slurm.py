"""``--launcher slurm``: batch scripts for training (one ``torchrun`` per node) and for
ingestion (a job array), submitted with ``sbatch`` and followed with ``scontrol``.

Training: ``srun`` starts one ``torchrun`` per node; they meet at the first node's hostname
(``scontrol show hostnames``) with the job id as rendezvous id. The job asks for SIGTERM
``signal_before_s`` before its time limit (and gets it on preemption); the batch shell passes
it to the ranks, which checkpoint and stop; if the run is not finished the job requeues itself
(``scontrol requeue``) and the next start resumes from the checkpoint.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medscale.errors import LaunchError
from medscale.launch.torchrun import TORCHRUN_ENV, TorchrunPlan, torchrun_args, worker_args
from medscale.train.config import SlurmConfig

TERMINAL_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "PREEMPTED",
}  # fmt: skip


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise LaunchError(
            f"`{tool}` is not on PATH: this machine is not a SLURM login node (or SLURM's "
            "commands are not loaded; try `module load slurm`). Use --dry-run to print the "
            "batch script, or --launcher torchrun to run here"
        )
    return path


def sbatch_header(
    slurm: SlurmConfig, job_name: str, output: Path, *, ntasks_per_node: int | None
) -> list[str]:
    """The ``#SBATCH`` lines every medscale job shares (resources, account, output)."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f"#SBATCH --output={output}"]
    lines += ["#SBATCH --open-mode=append", f"#SBATCH --time={slurm.time}"]
    lines += [f"#SBATCH --cpus-per-task={slurm.cpus_per_task}"]
    if ntasks_per_node is not None:
        lines += [f"#SBATCH --nodes={slurm.nodes}", f"#SBATCH --ntasks-per-node={ntasks_per_node}"]
    if slurm.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={slurm.gpus_per_node}")
    for flag, value in (
        ("partition", slurm.partition),
        ("account", slurm.account),
        ("mem", slurm.mem),
    ):
        if value:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [f"#SBATCH {extra}" for extra in slurm.extra_sbatch]
    return lines


def train_script(
    slurm: SlurmConfig,
    config: str | Path,
    store: str,
    out_dir: str | Path,
    *,
    python: str = sys.executable,
    job_name: str = "medscale-train",
    max_steps: int | None = None,
) -> str:
    """The sbatch script that trains ``config`` on ``store`` into ``out_dir``."""
    out_dir = Path(out_dir).resolve()
    procs = slurm.procs_per_node or max(1, slurm.gpus_per_node)
    lines = sbatch_header(slurm, job_name, out_dir / "slurm-%j.out", ntasks_per_node=1)
    lines.append(f"#SBATCH --signal=B:TERM@{slurm.signal_before_s}")
    if slurm.requeue:
        lines.append("#SBATCH --requeue")
    plan = TorchrunPlan(
        nproc_per_node=procs,
        nnodes=slurm.nodes,
        rdzv_endpoint=f"$head_node:{slurm.rdzv_port}",
        rdzv_id="$SLURM_JOB_ID",
    )
    # Unchecked: its $variables are the batch shell's to expand (inside double quotes).
    launch = [python, "-m", "torch.distributed.run", *torchrun_args(plan, check=False)]
    launch += worker_args(config, store, out_dir, quiet=True, max_steps=max_steps)
    quoted = " ".join(f'"{a}"' if "$" in a else shlex.quote(a) for a in launch)
    result = shlex.quote(str(out_dir / "result.json"))
    lines += [
        "set -uo pipefail",
        *slurm.setup,
        *(f"export {k}={v}" for k, v in TORCHRUN_ENV.items()),
        "# torchrun's grace for the ranks to checkpoint after SIGTERM (its default is 30 s).",
        f"export TORCH_ELASTIC_SHUTDOWN_TIMEOUT={max(30, slurm.signal_before_s - 10)}",
        "# The ranks meet on the first node of the allocation, never on localhost.",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        'echo "medscale: start ${SLURM_RESTART_COUNT:-0} of job $SLURM_JOB_ID on $head_node"',
        f"srun --kill-on-bad-exit=1 --ntasks-per-node=1 {quoted} &",
        "srun_pid=$!",
        "# SIGTERM (time limit near, or preemption): pass it to the ranks through SLURM (srun",
        "# itself would end the step at once); they checkpoint at the next step and stop.",
        'trap \'echo "medscale: SIGTERM, checkpointing"; '
        'scancel --signal=TERM "$SLURM_JOB_ID"\' TERM',
        'wait "$srun_pid"; status=$?',
        'while kill -0 "$srun_pid" 2>/dev/null; do wait "$srun_pid"; status=$?; done',
        f"if {shlex.quote(python)} -c 'import json,sys; "
        f'sys.exit(0 if json.load(open(sys.argv[1]))["finished"] else 1)\' {result} '
        "2>/dev/null; then",
        '  echo "medscale: run finished"; exit 0',
        "fi",
    ]
    if slurm.requeue:
        lines += [
            f"if [ -f {shlex.quote(str(out_dir / 'checkpoints' / 'last.pt'))} ]; then",
            '  echo "medscale: not finished (status $status): requeueing to resume"',
            '  scontrol requeue "$SLURM_JOB_ID"; exit 0',
            "fi",
        ]
    lines += ['echo "medscale: training failed (status $status)"', 'exit "$status"']
    return "\n".join(lines) + "\n"


def ingest_array_script(
    slurm: SlurmConfig,
    job_file: str | Path,
    n_tasks: int,
    log_dir: str | Path,
    *,
    python: str = sys.executable,
    max_parallel: int | None = None,
    job_name: str = "medscale-ingest",
) -> str:
    """A job array of ``n_tasks``: task ``i`` ingests its share of the recordings listed in
    ``job_file`` (see `medscale.launch.units`)."""
    log_dir = Path(log_dir).resolve()
    lines = sbatch_header(slurm, job_name, log_dir / "ingest-%A_%a.out", ntasks_per_node=None)
    limit = f"%{max_parallel}" if max_parallel else ""
    lines.append(f"#SBATCH --array=0-{n_tasks - 1}{limit}")
    job = shlex.quote(str(Path(job_file).resolve()))
    lines += [
        "set -euo pipefail",
        *slurm.setup,
        f'{shlex.quote(python)} -m medscale.launch.units {job} --task "$SLURM_ARRAY_TASK_ID"',
    ]
    return "\n".join(lines) + "\n"


def submit(script: str, script_path: str | Path) -> str:
    """Write ``script`` to ``script_path`` and ``sbatch`` it; the job id."""
    sbatch = _require("sbatch")
    path = Path(script_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    done = subprocess.run([sbatch, "--parsable", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise LaunchError(f"sbatch {path} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().split(";")[0]


@dataclass(frozen=True)
class JobState:
    job_id: str
    states: dict[str, str]  # job id (array: "ID_i") -> state
    exit_codes: dict[str, str]
    restarts: int

    @property
    def done(self) -> bool:
        return bool(self.states) and all(s in TERMINAL_STATES for s in self.states.values())

    @property
    def ok(self) -> bool:
        return self.done and all(s == "COMPLETED" for s in self.states.values())


def job_state(job_id: str) -> JobState:
    """The job's (or each array task's) state from ``scontrol show job``."""
    scontrol = _require("scontrol")
    done = subprocess.run(
        [scontrol, "-o", "show", "job", job_id], capture_output=True, text=True, check=False
    )
    states, codes, restarts = {}, {}, 0
    for line in done.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" not in fields:
            continue
        key = fields["JobId"]
        if fields.get("ArrayTaskId") and fields.get("ArrayJobId"):
            key = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"
        states[key] = fields.get("JobState", "UNKNOWN")
        codes[key] = fields.get("ExitCode", "")
        restarts = max(restarts, int(fields.get("Restarts", "0") or 0))
    if done.returncode != 0 and not states:
        raise LaunchError(f"scontrol show job {job_id}: {done.stderr.strip()}")
    return JobState(job_id, states, codes, restarts)


def wait_for_job(
    job_id: str,
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
    on_poll: Callable[[], None] | None = None,
) -> JobState:
    """Poll until every task of ``job_id`` ends (``sbatch --wait`` is slow and needs
    accounting); the final `JobState`. ``on_poll`` runs at every poll (progress)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        if on_poll is not None:
            on_poll()
        state = job_state(job_id)
        if state.done:
            return state
        if deadline is not None and time.monotonic() > deadline:
            raise LaunchError(f"SLURM job {job_id} not done after {timeout_s:.0f} s: {state}")
        time.sleep(poll_s)
