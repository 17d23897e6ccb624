"""Experiment tracking: config, learning curves and artifacts reach MLflow and TensorBoard,
and nothing sensitive does (paths with patient ids, addresses, credentials)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch")

from medscale.data.splits import make_split, write_split
from medscale.train import TrainConfig, train
from medscale.train.tracking import safe_params

from .conftest import tiny_config

PATIENT = "patient-0042"
REPO = Path(__file__).resolve().parents[2]


def test_safe_params_leave_out_locations_and_credentials():
    config = {
        "model": "usleep-small",
        "optimizer": {"lr": 0.003, "betas": [0.9, 0.999]},
        "split": {"file": f"/data/{PATIENT}/split.json", "val_fraction": 0.2},
        "ray": {"address": "10.0.0.5:6379", "num_workers": 2},
        "slurm": {"account": "clinic-7", "extra_sbatch": ["--chdir=/home/alice"]},
        "api_token": "s3cr3t",
        "notes": "~/runs/today",
    }
    params = safe_params(config)
    assert params == {
        "model": "usleep-small",
        "optimizer.lr": "0.003",
        "optimizer.betas": "[0.9, 0.999]",
        "split.val_fraction": "0.2",
        "ray.num_workers": "2",
    }


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def patient_split(train_store, tmp_path_factory) -> Path:
    """A split file under a folder named like a patient: its path must never be logged."""
    folder = tmp_path_factory.mktemp("tracking") / PATIENT
    folder.mkdir()
    split = make_split(train_store, val_fraction=0.25, test_fraction=0.25, seed=3)
    return write_split(split, folder / "split.json")


def _train(store: Path, split: Path, out: Path, backends: list[str]) -> None:
    config = TrainConfig.from_dict(
        tiny_config(
            max_steps=2, val_every=2, log=["csv", "jsonl", *backends], split={"file": str(split)}
        )
    )
    assert train(config, store, out, progress=False).finished


@pytest.mark.slow  # a 2-step run; MLflow's first SQLite store builds its tables
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # MLflow's use of SQLAlchemy
def test_a_run_reaches_tensorboard_and_a_local_mlflow_store(
    train_store, patient_split, tmp_path, monkeypatch
):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "run"
    _train(train_store, patient_split, run_dir, ["mlflow", "tensorboard"])

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    assert "val/kappa" in events.Tags()["scalars"]
    assert {"config/text_summary", "metrics.csv/text_summary"} <= set(events.Tags()["tensors"])

    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("medscale").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["model"] == "usleep-small" and "split.file" not in run.data.params
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"config.json", "metrics.csv"}

    for folder in (run_dir / "tensorboard", run_dir / "mlartifacts"):
        assert PATIENT.encode() not in _all_bytes(folder)
    assert PATIENT.encode() not in (run_dir / "mlflow.db").read_bytes()
    assert str(REPO).encode() not in (run_dir / "mlflow.db").read_bytes()


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # MLflow's use of SQLAlchemy
def test_a_run_reaches_a_real_mlflow_server(train_store, patient_split, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    folder = tmp_path / "server"
    up = subprocess.run(
        [str(REPO / "scripts" / "mlflow-up.sh"), str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if up.returncode == 3:
        pytest.skip(up.stderr.strip())
    assert up.returncode == 0, up.stderr
    uri = up.stdout.strip()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "medscale-real-test")
        _train(train_store, patient_split, tmp_path / "run", ["mlflow"])
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("medscale-real-test")
        (run,) = client.search_runs([experiment.experiment_id])
        assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 2
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
            "config.json",
            "metrics.csv",
        }
        assert not (tmp_path / "run" / "mlflow.db").exists()  # the server's store, not a local one
        assert PATIENT.encode() not in _all_bytes(folder)
    finally:
        subprocess.run([str(REPO / "scripts" / "mlflow-down.sh"), str(folder)], check=False)
        shutil.rmtree(folder, ignore_errors=True)
