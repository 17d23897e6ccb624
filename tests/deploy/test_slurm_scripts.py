"""The example batch scripts in deploy/slurm: they parse, ask Slurm for what the docs say,
and behave, run by bash against stand-ins for ``srun``, ``scancel`` and ``scontrol`` (no
Slurm needed).

The stand-in ``srun`` records its arguments and plays the training step: it stays up until
the step gets SIGTERM (or exits at once, as told). As the real ``srun`` does, it kills the
step outright when it is itself sent SIGTERM, so the tests check that the batch script
passes the early SIGTERM on with ``scancel --signal=TERM`` (the step checkpoints), then
requeues the job, and that a rerun gets ``--resume``. (That srun behaviour, and the whole
sequence with a real torchrun, were seen on a single-node Slurm; see docs/deploy.md.)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLURM = REPO / "deploy" / "slurm"
SCRIPTS = {"lumi": SLURM / "lumi.sbatch", "juwels": SLURM / "juwels.sbatch"}
BASH = shutil.which("bash")

pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")

FAKE_SRUN = r"""#!/usr/bin/env bash
# Records one call per file (arguments NUL-separated); plays the training step.
n=$(ls "$STUB_LOG" | grep -c '^srun\.' || true)
printf '%s\0' "$@" > "$STUB_LOG/srun.$n"
case " $* " in *" torch.distributed.run "*) ;; *) exit 0 ;; esac
case "$STUB_MODE" in
    exit*) exit "${STUB_MODE#exit}" ;;
esac
# The step's tasks: checkpoint and exit 1 on SIGTERM (what scancel --signal=TERM sends).
bash -c 'trap "echo term > \"$STUB_LOG/term\"; exit 1" TERM
         : > "$STUB_LOG/running"
         for _ in $(seq 400); do sleep 0.05; done
         exit 99' &
step=$!
echo "$step" > "$STUB_LOG/step.pid"
# Like the real srun: SIGTERM to srun itself kills the step outright, no checkpoint.
trap 'echo killed > "$STUB_LOG/srun-got-term"; kill -KILL "$step"; exit 137' TERM
wait "$step"
"""

FAKE_SCANCEL = r"""#!/usr/bin/env bash
printf '%s\0' "$@" > "$STUB_LOG/scancel"
if [[ "$1" == --signal=TERM ]]; then kill -TERM "$(cat "$STUB_LOG/step.pid")"; fi
"""

FAKE_SCONTROL = r"""#!/usr/bin/env bash
case "$1" in
    show) printf 'nid001000\nnid001001\n' ;;
    requeue) echo "$2" > "$STUB_LOG/requeue" ;;
    *) echo "scontrol stand-in: unexpected $*" >&2; exit 1 ;;
esac
"""


def directives(text: str) -> list[str]:
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("#SBATCH ")]


def code_lines(text: str) -> list[str]:
    return [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize("site", sorted(SCRIPTS))
def test_script_parses(site):
    result = subprocess.run([BASH, "-n", str(SCRIPTS[site])], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("site", sorted(SCRIPTS))
def test_script_asks_for_early_sigterm_and_requeue(site):
    found = directives(SCRIPTS[site].read_text())
    assert "--signal=B:TERM@120" in found
    assert "--requeue" in found
    assert "--ntasks-per-node=1" in found  # one torchrun per node
    assert "--open-mode=append" in found  # a requeued run appends to the same log


def test_lumi_script_is_for_lumi_g():
    text = SCRIPTS["lumi"].read_text()
    found = directives(text)
    assert "--partition=standard-g" in found
    assert "--gpus-per-node=8" in found
    assert "export NCCL_SOCKET_IFNAME=hsn0,hsn1,hsn2,hsn3" in text
    assert "singularity exec" in text


def test_juwels_script_is_for_a_booster():
    text = SCRIPTS["juwels"].read_text()
    found = directives(text)
    assert "--partition=booster" in found
    assert "--gres=gpu:4" in found
    assert "apptainer exec --nv" in text


@pytest.mark.parametrize("site", sorted(SCRIPTS))
def test_rendezvous_is_on_the_first_hostname_never_localhost(site):
    text = SCRIPTS[site].read_text()
    code = "\n".join(code_lines(text))
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1' in code
    assert '--rdzv-endpoint="$head_node:$rdzv_port"' in code
    assert '--rdzv-id="$SLURM_JOB_ID"' in code
    assert "--rdzv-backend=c10d" in code
    assert "export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in code
    for bad in ("localhost", "127.0.0.1", "SLURM_PROCID", "SLURM_NODEID"):
        assert bad not in code, bad
    # A Slurm variable inside single quotes would reach torchrun unexpanded.
    assert not re.search(r"'[^'\n]*\$\{?SLURM_[^'\n]*'", code)


# -- behaviour, against stand-ins ----------------------------------------------------------


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", FAKE_SRUN), ("scancel", FAKE_SCANCEL), ("scontrol", FAKE_SCONTROL)):
        path = bin_dir / name
        path.write_text(body)
        path.chmod(0o755)
    log = tmp_path / "log"
    log.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "USER": "tester",
        "STUB_LOG": str(log),
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "nid[001000-001001]",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_CPUS_PER_TASK": "7",
    }
    return tmp_path, log, env


def start(site: str, cwd: Path, env: dict[str, str], **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [BASH, str(SCRIPTS[site]), "cfg.yaml", "/scratch/store.zarr", "/scratch/runs/r1"],
        cwd=cwd,
        env={**env, **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def srun_calls(log: Path) -> list[list[str]]:
    calls = sorted(log.glob("srun.*"), key=lambda p: int(p.suffix[1:]))
    return [p.read_bytes().decode().split("\0")[:-1] for p in calls]


def training_call(log: Path) -> list[str]:
    (call,) = [c for c in srun_calls(log) if "torch.distributed.run" in c]
    return call


@pytest.mark.parametrize(
    "site,procs,container",
    [
        ("lumi", "8", ["singularity", "exec"]),
        ("juwels", "4", ["apptainer", "exec", "--nv"]),
    ],
)
def test_script_starts_one_torchrun_per_node_with_the_rendezvous(
    fake_slurm, site, procs, container
):
    cwd, log, env = fake_slurm
    proc = start(site, cwd, env, STUB_MODE="exit0")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    call = training_call(log)
    step = call.index("python")
    assert call[:step][:1] == ["--ntasks-per-node=1"]
    assert "--cpus-per-task=7" in call[:step]
    at = call.index(container[0])
    assert call[at : at + len(container)] == container
    assert call[step - 1].endswith(".sif")  # the image, right before the command
    run = call[step:]
    assert run[:3] == ["python", "-m", "torch.distributed.run"]
    for arg in (
        "--nnodes=2",
        f"--nproc-per-node={procs}",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=nid001000:29500",
        "--rdzv-id=4242",
    ):
        assert arg in run, (arg, run)
    worker = run[run.index("-m", 3) :]
    assert worker == [
        "-m",
        "medscale.launch.worker",
        "cfg.yaml",
        "--store",
        "/scratch/store.zarr",
        "--out",
        "/scratch/runs/r1",
    ]
    assert not (log / "requeue").exists()


def test_juwels_script_runs_without_a_container_when_told(fake_slurm):
    cwd, log, env = fake_slurm
    proc = start("juwels", cwd, env, STUB_MODE="exit0", MEDSCALE_SIF="")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    call = training_call(log)
    assert "apptainer" not in call
    assert call[call.index("python") - 1].startswith("--kill-on-bad-exit")


@pytest.mark.parametrize("site", sorted(SCRIPTS))
@pytest.mark.parametrize("how", ["requeued", "by hand"])
def test_a_rerun_resumes(fake_slurm, site, how):
    cwd, log, env = fake_slurm
    extra = {"SLURM_RESTART_COUNT": "1"} if how == "requeued" else {"MEDSCALE_RESUME": "1"}
    proc = start(site, cwd, env, STUB_MODE="exit0", **extra)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert training_call(log)[-1] == "--resume"


@pytest.mark.parametrize("site", sorted(SCRIPTS))
def test_a_failed_step_fails_the_job_without_requeue(fake_slurm, site):
    cwd, log, env = fake_slurm
    proc = start(site, cwd, env, STUB_MODE="exit2")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2, out
    assert not (log / "requeue").exists()


@pytest.mark.parametrize("site", sorted(SCRIPTS))
def test_sigterm_reaches_the_step_and_requeues_the_job(fake_slurm, site):
    cwd, log, env = fake_slurm
    proc = start(site, cwd, env, STUB_MODE="wait")
    try:
        while not (log / "running").exists():  # bounded by the script, not by seconds
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # what --signal=B:TERM@120 does
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (log / "term").exists(), f"the step never got SIGTERM\n{out}"
    assert not (log / "srun-got-term").exists(), "srun itself was signalled (kills the step)"
    assert (log / "scancel").read_bytes().decode().split("\0")[:-1] == ["--signal=TERM", "4242"]
    assert (log / "requeue").read_text().strip() == "4242", out
    assert proc.returncode == 0, out
    assert "requeueing job 4242" in out
