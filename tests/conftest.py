"""Shared fixtures: the real data folder, and a small synthetic store."""

from __future__ import annotations

import os
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
