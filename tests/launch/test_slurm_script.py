"""The batch scripts medscale writes for SLURM, checked without a cluster."""

from __future__ import annotations

import subprocess

import pytest

from medscale.errors import LaunchError
from medscale.launch.slurm import ingest_array_script, submit, train_script
from medscale.train.config import SlurmConfig


@pytest.fixture
def script(tmp_path) -> str:
    slurm = SlurmConfig(
        nodes=4, gpus_per_node=8, partition="standard-g", account="project_1", time="2:00:00",
        setup=("module load LUMI",),
    )  # fmt: skip
    return train_script(slurm, "/cfg/run.yaml", "/data/store", tmp_path / "run")


def test_train_script_is_valid_bash(script, tmp_path):
    path = tmp_path / "train.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_train_script_requests_the_configured_resources(script):
    for line in (
        "#SBATCH --nodes=4",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=standard-g",
        "#SBATCH --account=project_1",
        "#SBATCH --time=2:00:00",
        "#SBATCH --signal=B:TERM@120",
        "#SBATCH --requeue",
        "module load LUMI",
    ):
        assert line in script.splitlines(), line


def test_train_script_meets_on_the_first_node_with_the_job_id(script):
    assert 'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in script
    assert '"--rdzv_endpoint=$head_node:29500"' in script
    assert '"--rdzv_id=$SLURM_JOB_ID"' in script  # double quotes: expanded by the shell
    assert "localhost" not in script.split("#SBATCH --requeue", 1)[1].replace(
        "never on localhost", ""
    )
    assert "--nproc_per_node=8" in script and "--nnodes=4" in script
    assert "-m medscale.launch.worker /cfg/run.yaml --store /data/store" in script
    assert "--resume" in script  # a requeued job continues from its checkpoint


def test_train_script_requeues_only_an_unfinished_run_with_a_checkpoint(script):
    body = script.split('wait "$srun_pid"', 1)[1]
    assert body.index('["finished"]') < body.index("scontrol requeue")
    assert "checkpoints/last.pt ]" in body


def test_ingest_array_script(tmp_path):
    text = ingest_array_script(SlurmConfig(), tmp_path / "job.json", 5, tmp_path, max_parallel=2)
    assert "#SBATCH --array=0-4%2" in text
    assert "-m medscale.launch.units" in text and '--task "$SLURM_ARRAY_TASK_ID"' in text


def test_submit_without_sbatch_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LaunchError, match=r"`sbatch` is not on PATH.*--dry-run"):
        submit("#!/bin/bash\n", tmp_path / "x.sbatch")


def test_cli_dry_run_prints_the_script(tmp_path, capsys):
    from medscale.cli.main import main

    code = main(
        ["train", "usleep-small", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "r"),
         "--launcher", "slurm", "--nproc", "2", "--dry-run"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.startswith("#!/bin/bash") and "--nproc_per_node=2" in printed
    assert not (tmp_path / "r").exists()  # a dry run writes nothing
