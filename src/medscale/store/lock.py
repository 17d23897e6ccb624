"""`StoreLock`: one writer per store at a time, released when the writer's process dies.

The lock is a POSIX record lock (``fcntl.lockf``) on ``STORE/write.lock``. The kernel drops
it when the process exits for any reason, SIGKILL included, so there is no stale lock to
clean up by hand. On NFS the same call is forwarded to the server (NLM for NFSv3, the
protocol's own locks for NFSv4), and on Lustre to the lock manager when the client is
mounted with ``-o flock``; a client that dies loses its locks when its lease expires.
Why not ``flock()``, lock directories or lock files created with O_EXCL: see
``docs/design/store-lock.md``.

A run's worker processes (pool workers, SLURM tasks) do not take the writer lock: their
run holds it. Each holds a shared lock on ``STORE/writers.lock`` while it writes one
recording (`StoreLock.writing`), and a new run waits for those to end after it takes the
writer lock, so a worker orphaned by a killed run cannot write under the next run.

The lock file also says who holds it (host, pid, command, since when), so a second writer
is refused with a message naming the holder, or waits for it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from medscale.errors import StoreError

LOCK_FILE = "write.lock"
# Every process writing a recording holds a shared lock on this file meanwhile. A new run
# takes it exclusively once, so it never starts while a worker of a killed run still writes.
WORKERS_FILE = "writers.lock"
# Orphaned pool workers exit within a second of their driver (ingest.run._init_worker).
ORPHAN_GRACE_S = 5.0
# Errors that mean "someone else holds it" (EAGAIN/EACCES) versus "this mount cannot lock".
_HELD = {errno.EAGAIN, errno.EACCES}
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
# POSIX locks belong to the process: a second lock here would succeed, and closing its file
# would drop the first. So this process refuses to take a lock it already holds.
_HELD_HERE: set[Path] = set()


class StoreLockedError(StoreError):
    """Another process holds the store's writer lock."""


class StoreLock:
    """The writer lock of the local store folder ``root``.

    Use as a context manager: ``with StoreLock(root, timeout_s=60): ...``. ``timeout_s`` 0
    refuses at once when the lock is held; a positive value waits up to that long, polling.
    """

    def __init__(self, root: str | Path, *, timeout_s: float = 0.0, poll_s: float = 0.2):
        self.path = Path(root) / LOCK_FILE
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._fd: int | None = None

    def holder(self) -> str:
        """Who holds (or last held) the lock, as the lock file says."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return f"pid {info['pid']} on {info['host']} since {info['since']} ({info['command']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "an unknown process (the lock file names no holder)"

    def acquire(self) -> None:
        key = self.path.resolve()
        if key in _HELD_HERE:
            raise StoreLockedError(f"{self.path.parent}: this process already holds its lock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o664)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno in _UNSUPPORTED:
                    os.close(fd)
                    raise StoreError(
                        f"{self.path}: this file system does not support POSIX locks "
                        f"({os.strerror(exc.errno)}); on Lustre mount with -o flock, on NFS "
                        "run the lock daemon (rpc.statd/lockd) or use NFSv4"
                    ) from None
                if exc.errno not in _HELD:
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    waited = f" after waiting {self.timeout_s:g} s" if self.timeout_s else ""
                    raise StoreLockedError(
                        f"{self.path.parent}: another writer holds the store lock{waited}: "
                        f"{self.holder()}; wait for it to finish (or pass a wait time, "
                        "`--wait-lock SECONDS`)"
                    ) from None
                time.sleep(self.poll_s)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            # The program and subcommand only: paths in the arguments may name people.
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:2]]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        _HELD_HERE.add(key)
        try:
            self._wait_for_orphans(deadline + ORPHAN_GRACE_S)
        except BaseException:
            self.release()
            raise

    def _wait_for_orphans(self, deadline: float) -> None:
        fd = os.open(self.path.with_name(WORKERS_FILE), os.O_RDWR | os.O_CREAT, 0o664)
        try:
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return  # closing the file below drops it again at once
                except OSError as exc:
                    if exc.errno not in _HELD:
                        raise
                if time.monotonic() >= deadline:
                    raise StoreLockedError(
                        f"{self.path.parent}: processes of an earlier run still write "
                        f"recordings (they hold {WORKERS_FILE}); stop them or wait"
                    )
                time.sleep(self.poll_s)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Held by a worker process while it writes one recording (a shared lock)."""
        fd = os.open(self.path.with_name(WORKERS_FILE), os.O_RDWR | os.O_CREAT, 0o664)
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.ftruncate(fd, 0)  # the file no longer names a holder
        os.close(fd)  # closing drops the lock
        _HELD_HERE.discard(self.path.resolve())

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
