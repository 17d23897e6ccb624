"""The ingest and store commands' output meets a closed pipe quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from medscale.store.store import Store
from medscale.tasks import SLEEP_STAGING

SRC = Path(__file__).resolve().parents[2] / "src"


def test_store_info_into_a_closed_pipe_exits_quietly(tmp_path):
    """`medscale store info STORE | head -0`: the reader is gone before anything is written."""
    Store.create(tmp_path / "store", task=SLEEP_STAGING)
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader, as after `head` has exited
    try:
        done = subprocess.run(
            [sys.executable, "-m", "medscale.cli.main", "store", "info", str(tmp_path / "store")],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert done.stderr == ""
