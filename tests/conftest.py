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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set MEDSCALE_SHARED_DATA to point at it)")
    return path
