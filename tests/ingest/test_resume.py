"""A killed ingest loses no finished recording and leaves none corrupt; a rerun does the rest."""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medscale.ingest import ingest
from medscale.store import Store
from medscale.synth import synthesize_nights
from medscale.tasks import SLEEP_STAGING

pytestmark = pytest.mark.slow


def start_ingest(
    source: Path, store: Path, *extra: str, preexec=None, capture: bool = False
) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "medscale.cli.main",
        "ingest",
        "synthetic",
        "--source",
        str(source),
    ]
    cmd += ["--store", str(store), "-q", *extra]
    stream = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(cmd, stdout=stream, stderr=stream, text=True, preexec_fn=preexec)


def committed(store: Path) -> list[str]:
    folder = store / "commits" / "synthetic"
    return sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nights")
    synthesize_nights(out, 6, seed=5, duration_h=1.0, progress=False)
    return out


@pytest.fixture(scope="module")
def clean_hash(nights, tmp_path_factory) -> str:
    return ingest(
        "synthetic", nights, tmp_path_factory.mktemp("clean") / "s", progress=False
    ).store_content_hash


@pytest.mark.parametrize("workers", ["1", "2"])
def test_kill_then_rerun_does_only_the_rest_and_equals_a_clean_run(
    nights, clean_hash, tmp_path, workers
):
    store = tmp_path / "s"
    pools_before = pool_processes()
    proc = start_ingest(nights, store, "--workers", workers)
    while not committed(store) and proc.poll() is None:  # bounded by the run, not by seconds
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # the driver dies at once, mid-write or not
    proc.wait()
    done_before = committed(store)
    assert 1 <= len(done_before) < 6, "the kill came too late to test resuming"
    if workers == "2":  # pool workers may finish a commit before they notice and exit
        deadline = time.monotonic() + 120  # a hang guard: on a loaded machine exits are slow
        while pool_processes() - pools_before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pool_processes() - pools_before, "pool workers outlived their driver"
        done_before = committed(store)
    # Whatever is committed is readable and whole.
    for info in Store(store).recordings():
        Store(store).read_signals(info, info.channel_names[:1], 0, 3840)
    report = ingest("synthetic", nights, store, progress=False)
    skipped = sorted(f"{u.recording_id}.json" for u in report.units if u.status == "skipped")
    assert skipped == done_before
    assert report.count("ingested") == 6 - len(done_before)
    assert Store(store).content_hash() == clean_hash


def pool_processes() -> set[int]:
    """Pids of multiprocessing forkserver processes (the server and the pool workers)."""
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"multiprocessing.forkserver" in cmdline.read_bytes():
                pids.add(int(cmdline.parent.name))
        except OSError:  # the process ended while we looked
            pass
    return pids


def test_kills_at_random_moments_never_corrupt_the_store(nights, clean_hash, tmp_path):
    store = tmp_path / "s"
    rng = __import__("random").Random(1)
    for _ in range(4):
        proc = start_ingest(nights, store)
        time.sleep(rng.uniform(1.0, 4.0))
        proc.kill()
        proc.wait()
        # A kill may come before or during the store's creation; the next run must still
        # open it, and every visible recording must read back whole.
        reopened = Store.create(store, task=SLEEP_STAGING)
        for info in reopened.recordings():
            assert reopened.read_segment_labels(info).shape == (info.n_segments,)
    ingest("synthetic", nights, store, progress=False)
    assert Store(store).content_hash() == clean_hash


def test_a_full_disk_stops_the_run_cleanly_and_keeps_finished_recordings(nights, tmp_path):
    store = tmp_path / "s"
    partial = tmp_path / "partial"
    partial.mkdir()
    for path in [*nights.glob("synth-000-*"), *nights.glob("synth-001-*")]:
        shutil.copy(path, partial / path.name)
    first = ingest("synthetic", partial, store, progress=False)
    assert first.count("ingested") == 2
    before = Store(store).content_hash()

    def small_file_limit():  # files over 1 MB cannot be written, like a full quota
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = start_ingest(nights, store, preexec=small_file_limit, capture=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, (out, err)
    assert "the run stopped early" in err
    assert "File too large" in err or "No space" in err
    assert "not_attempted" in out or "not attempted" in out
    store_obj = Store(store)
    assert [i.recording_id for i in store_obj.recordings()] == ["synth-000", "synth-001"]
    assert store_obj.content_hash() == before
    reports = sorted((store / "reports").glob("*.md"))
    assert "The run stopped early" in reports[-1].read_text()
