from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medscale.synth import synthesize_nights


@pytest.fixture(scope="session")
def synth_nights_master(tmp_path_factory) -> Path:
    """Three short SYNTHETIC nights, written once per session."""
    out = tmp_path_factory.mktemp("synth-master")
    synthesize_nights(out, 3, seed=11, duration_h=0.5, progress=False)
    return out


@pytest.fixture
def synth_nights(synth_nights_master, tmp_path) -> Path:
    """A private copy of the nights, free to modify."""
    copy = tmp_path / "nights"
    shutil.copytree(synth_nights_master, copy)
    return copy
