"""Experiment tracking: a training run's config, metrics (learning curves) and artifacts in
MLflow and TensorBoard, when the config's ``log`` names them (off by default). Campaign
trials run the trainer, so their configs turn it on the same way.

**MLflow**: ``MLFLOW_TRACKING_URI`` when set (a server: ``scripts/mlflow-up.sh``), else a
SQLite store ``RUN/mlflow.db`` with artifacts under ``RUN/mlartifacts`` (the file store is
in maintenance mode in MLflow 3). Experiment: ``MLFLOW_EXPERIMENT_NAME`` or ``medscale``.
**TensorBoard**: event files under ``RUN/tensorboard``.

**Nothing sensitive leaves the run**: parameters are the flattened config without entries
whose key names a location or a credential (paths, files, stores, addresses, URLs, keys,
tokens, passwords, users, hosts) and without string values that hold a path separator;
the run is named by the run folder's name only; MLflow's automatic tags that carry the
user, the script path or the git remote are overwritten; the artifacts are that cleaned
config and ``metrics.csv`` (numbers only). The manifest (command line, store location,
host) is never sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

SENSITIVE_KEY = re.compile(
    r"path|dir|file|store|address|url|uri|host|user|account|partition|key|secret|token|"
    r"password|credential|pseudonym",
    re.IGNORECASE,
)
# Tags MLflow fills in from the environment; overwritten so no user, path or remote leaks.
NEUTRAL_TAGS = {
    "mlflow.user": "medscale",
    "mlflow.source.name": "medscale train",
    "mlflow.source.type": "JOB",
    "mlflow.source.git.repoURL": "",
    "mlflow.gitRepoURL": "",
}
ARTIFACTS = ("metrics.csv",)  # numbers only, beside the cleaned config


def _looks_like_location(value: str) -> bool:
    # any separator: config values are names and numbers; a slash means a path or a URL
    return "/" in value or "\\" in value or value.startswith("~")


def safe_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``config`` flattened to ``a.b.c`` keys with string values, sensitive entries left
    out (see the module docstring)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if SENSITIVE_KEY.search(str(key)):
            continue
        if isinstance(value, Mapping):
            out.update(safe_params(value, f"{name}."))
            continue
        values = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, str) and _looks_like_location(v) for v in values):
            continue
        out[name] = json.dumps(value) if not isinstance(value, str) else value
    return out


class Tracker(Protocol):
    def log(self, numbers: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's own use of deprecated SQLAlchemy and protobuf APIs is not ours to fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


class MLflowTracker:
    """One MLflow run per training run, through an explicit client (no global state, so
    trials in one process do not share a run)."""

    def __init__(self, run_dir: Path, params: dict[str, str]) -> None:
        with _quiet():
            self._start(run_dir, params)

    def _start(self, run_dir: Path, params: dict[str, str]) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.run_dir = run_dir
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        local = not uri
        if local:
            uri = f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
            if not (run_dir / "mlflow.db").exists():
                # Create the store with its Default experiment's artifacts in the run folder;
                # the client would record the current directory there (a path that may name
                # a patient).
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                SqlAlchemyStore(uri, (run_dir / "mlartifacts").resolve().as_uri())
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "medscale")
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            location = (run_dir / "mlartifacts").resolve().as_uri() if local else None
            experiment_id = self.client.create_experiment(name, artifact_location=location)
        run = self.client.create_run(experiment_id, run_name=run_dir.name, tags=NEUTRAL_TAGS)
        self.run_id = run.info.run_id
        self.params = params
        items = [Param(k, v[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a call
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log(self, numbers: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in numbers.items()]
        with _quiet():
            self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        with _quiet():
            self.client.log_dict(self.run_id, self.params, "config.json")
            for name in ARTIFACTS:
                if (self.run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(self.run_dir / name))
            self.client.set_terminated(self.run_id)


class TensorBoardTracker:
    def __init__(self, run_dir: Path, params: dict[str, str]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        table = "\n".join(f"| {k} | {v} |" for k, v in sorted(params.items()))
        self.writer.add_text("config", "| key | value |\n|---|---|\n" + table, 0)

    def log(self, numbers: dict[str, float], step: int) -> None:
        for name, value in numbers.items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        for name in ARTIFACTS:
            if (self.run_dir / name).is_file():
                text = (self.run_dir / name).read_text()
                self.writer.add_text(name, "```\n" + text + "\n```", 0)
        self.writer.close()


TRACKERS = {"mlflow": MLflowTracker, "tensorboard": TensorBoardTracker}


def open_tracker(name: str, run_dir: Path, config: Mapping[str, Any]) -> Tracker:
    """The ``name`` backend for ``run_dir``, with ``config``'s safe parameters logged;
    ImportError when its package is not installed."""
    return TRACKERS[name](run_dir, safe_params(config))
