"""Concurrent writers, SIGKILLs mid-write and damaged records, with real processes."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medscale.cli.main import main
from medscale.ingest.run import ingest
from medscale.store.lock import LOCK_FILE
from medscale.store.store import Store
from medscale.synth import synthesize_nights
from medscale.synth.toy import write_toy_volume_store

SRC = Path(__file__).resolve().parents[2] / "src"
N_NIGHTS = 4


@pytest.fixture(scope="module")
def tiny_nights(tmp_path_factory) -> Path:
    """Four 6-minute SYNTHETIC nights: enough units for a kill to land between them."""
    out = tmp_path_factory.mktemp("tiny-nights")
    synthesize_nights(out, N_NIGHTS, seed=3, duration_h=0.1, progress=False)
    return out


def _cli(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.Popen(
        [sys.executable, "-m", "medscale.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_until_locked_by(store: Path, child: subprocess.Popen[str]) -> None:
    """Poll (bounded by tries) until ``child`` holds the store's writer lock."""
    for _ in range(6000):
        try:
            holder = json.loads((store / LOCK_FILE).read_text())
        except (OSError, ValueError):
            holder = {}
        if holder.get("pid") == child.pid:
            return
        assert child.poll() is None, child.communicate()
        time.sleep(0.01)
    raise AssertionError("the child never took the store lock")


def _assert_whole(store_path: Path, expected: int | None = None) -> None:
    """Every committed recording has whole arrays that read back."""
    store = Store(store_path)
    infos = store.recordings()
    if expected is not None:
        assert len(infos) == expected
    for info in infos:
        assert store.verify_recording(info) is None, info.key
        assert store.read_signals(info, stop=10).shape == (len(info.channels), 10)
        assert len(store.read_segment_labels(info)) == info.n_segments


@pytest.mark.slow
def test_a_second_ingest_is_refused_or_waits_while_one_runs(tiny_nights, tmp_path):
    store = tmp_path / "store"
    ingest("synthetic", tiny_nights, store, progress=False)  # an existing store to overwrite
    args = ("ingest", "synthetic", "--source", str(tiny_nights), "--store", str(store))
    first = _cli(*args, "--overwrite", "--quiet")
    _wait_until_locked_by(store, first)
    first.send_signal(signal.SIGSTOP)  # frozen mid-run, lock held: the others must meet it
    try:
        refused = _cli(*args, "--overwrite", "--quiet")
        waiting = _cli(*args, "--overwrite", "--quiet", "--wait-lock", "300")
        _, refused_err = refused.communicate(timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    assert refused.returncode == 1
    assert f"another writer holds the store lock: pid {first.pid} on " in refused_err
    assert "Traceback" not in refused_err
    for child in (first, waiting):
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        assert f"synthetic: {N_NIGHTS} ingested" in out
    _assert_whole(store, N_NIGHTS)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_a_sigkill_at_a_random_moment_loses_nothing_committed(tiny_nights, tmp_path, seed):
    """Kill an `ingest --overwrite` anywhere in its writes: what is committed stays whole,
    the lock is free at once, and a plain rerun restores every recording."""
    store = tmp_path / "store"
    ingest("synthetic", tiny_nights, store, progress=False)
    child = _cli(
        "ingest", "synthetic", "--source", str(tiny_nights), "--store", str(store),
        "--overwrite", "--quiet",
    )  # fmt: skip
    _wait_until_locked_by(store, child)
    time.sleep(random.Random(seed).uniform(0.0, 2.0))  # the locked phase lasts ~2 s here
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    _assert_whole(store)  # some recordings may be uncommitted: none is half-there
    report = ingest("synthetic", tiny_nights, store, progress=False)  # no lock refusal
    assert report.ok
    _assert_whole(store, N_NIGHTS)


def test_a_record_whose_arrays_are_gone_is_reported_and_reingested(tiny_nights, tmp_path, capsys):
    """A commit record without its `signals` array is never counted up to date."""
    store = tmp_path / "store"
    ingest("synthetic", tiny_nights, store, progress=False)
    shutil.rmtree(store / "recordings" / "synthetic" / "synth-001" / "signals")
    info = Store(store).recording("synthetic", "synth-001")
    assert info is not None
    assert "'signals' cannot be opened" in (Store(store).verify_recording(info) or "")

    assert main(["store", "info", str(store)]) == 1
    assert "damaged: synthetic/synth-001: array 'signals'" in capsys.readouterr().out

    report = ingest("synthetic", tiny_nights, store, progress=False)
    unit = next(u for u in report.units if u.recording_id == "synth-001")
    assert unit.status == "ingested"
    assert unit.repaired.startswith("damaged (array 'signals' cannot be opened")
    assert unit.attention() == [f"repaired: synth-001: the stored copy was {unit.repaired}"]
    assert [u.status for u in report.units].count("skipped") == N_NIGHTS - 1
    _assert_whole(store, N_NIGHTS)
    assert main(["store", "info", str(store)]) == 0


def test_a_record_missing_chunks_is_damaged(tiny_nights, tmp_path):
    store = tmp_path / "store"
    ingest("synthetic", tiny_nights, store, progress=False)
    chunks = store / "recordings" / "synthetic" / "synth-002" / "segment_labels" / "c"
    shutil.rmtree(chunks)
    info = Store(store).recording("synthetic", "synth-002")
    assert info is not None
    problem = Store(store).verify_recording(info)
    assert problem is not None and "'segment_labels' lacks 1 of its 1 chunk files" in problem
    # zarr would have read the missing chunk as its fill value: the damage is silent there.
    assert np.all(Store(store).read_segment_labels(info) == 0)


def test_a_volume_record_is_verified_against_the_shapes_its_commit_names(tmp_path):
    """Layout 2: every array the commit lists (here volume, mask, class_voxels) is checked."""
    store = write_toy_volume_store(tmp_path / "v", 1)
    (info,) = store.recordings()
    assert set(info.arrays) == {"volume", "mask", "class_voxels"}
    assert store.verify_recording(info) is None
    shutil.rmtree(tmp_path / "v" / "recordings" / "toy" / "toy-000" / "mask" / "c")
    assert store.verify_recording(info) == "array 'mask' lacks 1 of its 1 chunk files"
