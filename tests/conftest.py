"""Shared fixtures: the real data folder, and a small synthetic store."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real recordings: $MEDSCALE_SHARED_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("MEDSCALE_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _pseudonym_key_in_temp(tmp_path_factory):
    """Tests never read or write the user's real pseudonym key."""
    key_file = tmp_path_factory.mktemp("key") / "pseudonym.key"
    key_file.write_text("test-key-0123456789abcdef\n")
    old = {k: os.environ.get(k) for k in ("MEDSCALE_PSEUDONYM_KEY", "MEDSCALE_PSEUDONYM_KEY_FILE")}
    os.environ.pop("MEDSCALE_PSEUDONYM_KEY", None)
    os.environ["MEDSCALE_PSEUDONYM_KEY_FILE"] = str(key_file)
    yield key_file
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set MEDSCALE_SHARED_DATA to point at it)")
    return path


@pytest.fixture(scope="session")
def train_store(tmp_path_factory) -> Path:
    """Four half-hour surrogate nights, one subject each, ingested (training and launch tests)."""
    from medscale.ingest import ingest
    from medscale.synth import synthesize_nights

    root = tmp_path_factory.mktemp("train-store")
    synthesize_nights(root / "nights", 4, seed=11, duration_h=0.5, progress=False)
    ingest("synthetic", root / "nights", root / "store", progress=False)
    return root / "store"


@pytest.fixture(scope="session")
def tiny_run(train_store, tmp_path_factory) -> Path:
    """A tiny U-Sleep (EEG + EOG) trained 2 steps on `train_store`: for tests that need any
    trained run (prediction inputs, error messages), not a good one."""
    from medscale.train import TrainConfig, train

    config = TrainConfig.from_dict(
        {
            "model": "usleep-small",
            "model_kwargs": {"depth": 3, "init_filters": 4},
            "data": {"sampling": {"window_epochs": 2, "samples_per_epoch": 8}},
            "batch_size": 2,
            "max_steps": 2,
            "val_every": 2,
            "checkpoint_every": 2,
            "split": {"val_fraction": 0.25, "test_fraction": 0.25},
        }
    )
    run = tmp_path_factory.mktemp("tiny-run") / "run"
    train(config, train_store, run, progress=False)
    return run


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A private cluster for this module; SLURM_CONF (and the sacct stand-in) in the env."""
    folder = Path("/tmp") / f"medscale-slurm-test-{os.getpid()}"
    up = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm-up.sh"), str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert up.returncode == 0, f"scripts/slurm-up.sh failed:\n{up.stdout}\n{up.stderr}"
    saved = dict(os.environ)
    shown = subprocess.run(
        ["bash", "-c", f'source {folder}/env.sh && printf "%s\\n%s" "$SLURM_CONF" "$PATH"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    os.environ["SLURM_CONF"], os.environ["PATH"] = shown
    # Ranks under SLURM get one thread each, as under the tests' torchrun.
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield folder
    finally:
        os.environ.clear()
        os.environ.update(saved)
        subprocess.run(["bash", str(REPO / "scripts" / "slurm-down.sh"), str(folder)], timeout=120)
