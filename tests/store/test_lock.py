"""The store writer lock, held and contended by real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from medscale.store import lock as lock_module
from medscale.store.lock import StoreLock, StoreLockedError

SRC = Path(__file__).resolve().parents[2] / "src"


def _holder(root: Path, body: str) -> subprocess.Popen[str]:
    """A child process that takes the lock on ``root``, prints 'held', then runs ``body``."""
    code = textwrap.dedent(f"""
        import sys, time
        from medscale.store.lock import StoreLock
        lock = StoreLock({str(root)!r})
        lock.acquire()
        print("held", flush=True)
        {body}
    """)
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def _end(child: subprocess.Popen[str]) -> None:
    child.kill()
    child.communicate()  # reaps it and closes its pipes


def test_a_second_writer_is_refused_naming_the_holder_and_gets_it_after_a_sigkill(tmp_path):
    child = _holder(tmp_path, "time.sleep(600)")
    try:
        with pytest.raises(StoreLockedError) as caught:
            StoreLock(tmp_path).acquire()
        message = str(caught.value)
        assert f"pid {child.pid} on " in message and "another writer" in message
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        # The kernel dropped the dead process's lock: no stale lock to clean up.
        with StoreLock(tmp_path) as held:
            assert f"pid {os.getpid()} " in held.holder()
    finally:
        _end(child)


def test_a_waiting_writer_gets_the_lock_when_the_holder_finishes(tmp_path):
    # The holder leaves after reading one line: the waiter is blocked until we send it.
    child = _holder(tmp_path, "sys.stdin.readline()")
    lock = StoreLock(tmp_path, timeout_s=120, poll_s=0.05)
    waiter = threading.Thread(target=lock.acquire)
    waiter.start()
    try:
        waiter.join(0.5)
        assert waiter.is_alive(), "took a lock another process holds"
        assert child.stdin is not None
        child.stdin.write("done\n")
        child.stdin.flush()
        waiter.join(60)
        assert not waiter.is_alive()
        assert lock.holder().startswith(f"pid {os.getpid()} ")
    finally:
        _end(child)
        waiter.join(60)
        lock.release()
    assert "names no holder" in lock.holder()  # released: the file no longer names anyone


def test_a_process_cannot_take_its_own_lock_twice(tmp_path):
    with StoreLock(tmp_path), pytest.raises(StoreLockedError, match="already holds"):
        StoreLock(tmp_path).acquire()
    StoreLock(tmp_path).acquire()  # released on exit of the block: free again


def test_a_new_run_waits_for_writers_of_a_killed_run(tmp_path, monkeypatch):
    """A worker still writing (shared lock on writers.lock) keeps a new run out."""
    monkeypatch.setattr(lock_module, "ORPHAN_GRACE_S", 0.3)
    child = _holder(
        tmp_path,
        "ctx = lock.writing(); ctx.__enter__(); lock.release(); "
        "print('writing', flush=True); time.sleep(600)",
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "writing"
        with pytest.raises(StoreLockedError, match="still write recordings"):
            StoreLock(tmp_path, poll_s=0.05).acquire()
        _end(child)
        with StoreLock(tmp_path):
            pass
    finally:
        _end(child)
