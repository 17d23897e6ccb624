"""The durable ledger of a campaign: one Optuna study plus what Optuna lacks.

Optuna stores the trials (params, user attrs, states, intermediate values) and samples the
Bayesian form. This module adds three things every backend needs (see
``docs/design/campaigns.md`` for the measurements behind each choice):

- a **plan lock**, held while trials are planned, popped, reaped and reconciled, released by
  the kernel or the database when its holder dies (``flock``; PostgreSQL advisory lock);
- **heartbeats** per running trial, compared with the storage's own clock (file mtimes
  against a probe file; the database's ``now()``), so no two machines' clocks are compared;
- **claims**: a trial key counts once, through the first claim of it (a hard link that
  cannot be made twice; ``INSERT … ON CONFLICT DO NOTHING``).

Ledger URLs: ``journal:DIR`` (the local default: Optuna's journal file with an ``flock``
lock, ~1 ms per operation), ``file://DIR`` (the same on NFS/Lustre, with Optuna's O_EXCL
lock), ``sqlite:///PATH`` (WAL, ``BEGIN IMMEDIATE``) and ``postgresql+psycopg://…``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.storages.journal._file import BaseJournalFileLock

from medscale.errors import SpecError

__all__ = ["Ledger", "open_ledger"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


class FlockLock(BaseJournalFileLock):
    """Optuna's journal lock on ``flock``: the kernel frees it when its holder dies (Optuna's
    own file locks stall the next writer for their 30-s grace period)."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._fd: int | None = None
        self._local = threading.Lock()

    def acquire(self) -> bool:
        self._local.acquire()
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the flock
        self._local.release()


class Ledger:
    """The operations the campaign engine needs on top of ``study``."""

    url: str
    study: optuna.Study
    heartbeat_s: float

    @property
    def grace_s(self) -> float:
        """A trial whose last beat is older than this is dead: 1.5 beats, so that a reaper
        polling every quarter beat finds it within two."""
        return 1.5 * self.heartbeat_s

    def plan_lock(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def beat(self, trial_id: int) -> None:
        raise NotImplementedError

    def drop_beat(self, trial_id: int) -> None:
        raise NotImplementedError

    def stale(self, trial_ids: list[int]) -> list[int]:
        """Those of ``trial_ids`` (RUNNING trials) whose beat is older than the grace period
        or missing. Call under the plan lock: the asker beats before releasing it, so a
        RUNNING trial without any beat has lost its worker."""
        raise NotImplementedError

    def claim(self, key: str, number: int) -> bool:
        """Count ``key`` as done by trial ``number``; False when it was already claimed."""
        raise NotImplementedError

    def claims(self) -> dict[str, int]:
        raise NotImplementedError

    def claimed(self, key: str) -> bool:
        """Whether ``key`` is claimed (one lookup, not all claims)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (the study stays on disk)."""


# -- journal files: local and shared file systems ----------------------------------------


class JournalLedger(Ledger):
    def __init__(self, url: str, folder: Path, name: str, heartbeat_s: float, shared: bool):
        self.url, self.heartbeat_s = url, heartbeat_s
        self.folder = folder
        for sub in ("heartbeats", "claims"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        journal = str(folder / "ledger.jsonl")
        lock = JournalFileOpenLock(journal) if shared else FlockLock(folder / "ledger.lock")
        storage = JournalStorage(JournalFileBackend(journal, lock_obj=lock))
        self.study = _study(storage, name)
        self._plan = FlockLock(folder / "plan.lock")
        self._known: dict[str, tuple[str, int]] = {}  # claim file -> (key, trial); never change

    @contextlib.contextmanager
    def plan_lock(self) -> Iterator[None]:
        self._plan.acquire()
        try:
            yield
        finally:
            self._plan.release()

    def _beat_path(self, trial_id: int) -> Path:
        return self.folder / "heartbeats" / str(trial_id)

    def beat(self, trial_id: int) -> None:
        path = self._beat_path(trial_id)
        try:
            os.utime(path)
        except FileNotFoundError:
            path.touch()

    def drop_beat(self, trial_id: int) -> None:
        self._beat_path(trial_id).unlink(missing_ok=True)

    def stale(self, trial_ids: list[int]) -> list[int]:
        probe = self.folder / "heartbeats" / ".now"
        probe.touch()
        os.utime(probe)  # the file server's clock, as the beats use it
        now = _mtime(probe)
        out = []
        for trial_id in trial_ids:
            beat = _mtime(self._beat_path(trial_id))
            if beat is None or now is None or now - beat > self.grace_s:
                out.append(trial_id)
        return out

    def _claim_path(self, key: str) -> Path:
        return self.folder / "claims" / hashlib.sha256(key.encode()).hexdigest()

    def claim(self, key: str, number: int) -> bool:
        target = self._claim_path(key)
        tmp = target.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{number}")
        tmp.write_text(f"{number}\n{key}\n")
        try:
            os.link(tmp, target)  # atomic: exactly one link to a name can be made
            return True
        except FileExistsError:
            # NFS can lose the reply of a link that succeeded: then the temp file has 2 links
            return tmp.stat().st_nlink == 2
        finally:
            tmp.unlink(missing_ok=True)

    def claims(self) -> dict[str, int]:
        # A claim is written once and never changed: read only the files not seen before.
        for name in os.listdir(self.folder / "claims"):
            if name.startswith(".") or name in self._known:
                continue
            number, key = (self.folder / "claims" / name).read_text().split("\n", 1)
            self._known[name] = (key.rstrip("\n"), int(number))
        return dict(self._known.values())

    def claimed(self, key: str) -> bool:
        return self._claim_path(key).exists()


def _mtime(path: Path) -> float | None:
    """mtime read through an open file: NFS revalidates attributes on open (close-to-open)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)


# -- SQL databases: SQLite and PostgreSQL -------------------------------------------------

_NOW = {
    "sqlite": "(julianday('now') - 2440587.5) * 86400.0",
    "postgresql": "extract(epoch from clock_timestamp())",
}


class SqlLedger(Ledger):
    def __init__(self, url: str, name: str, heartbeat_s: float, lock_file: Path | None):
        from sqlalchemy import text

        self.url, self.heartbeat_s = url, heartbeat_s
        storage = _rdb_storage(url)
        self.engine = storage.engine
        self.dialect = self.engine.dialect.name
        self.study = _study(storage, name)
        self.study_id = self.study._study_id
        self._now = _NOW[self.dialect]
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS medscale_claims (study_id INTEGER NOT NULL, "
                    "key TEXT NOT NULL, trial_number INTEGER NOT NULL, "
                    "PRIMARY KEY (study_id, key))"
                )
            )
            conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS medscale_heartbeats (trial_id INTEGER PRIMARY "
                    "KEY, beat_at DOUBLE PRECISION NOT NULL)"
                )
            )
        self._lock_file = FlockLock(lock_file) if lock_file is not None else None
        self._local = threading.Lock()

    @contextlib.contextmanager
    def plan_lock(self) -> Iterator[None]:
        from sqlalchemy import text

        if self._lock_file is not None:
            self._lock_file.acquire()
            try:
                yield
            finally:
                self._lock_file.release()
            return
        # PostgreSQL: a session advisory lock, freed by the server if our connection dies
        with self._local, self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.study_id})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.study_id})
                conn.commit()

    def beat(self, trial_id: int) -> None:
        from sqlalchemy import text

        with self.engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO medscale_heartbeats (trial_id, beat_at) VALUES (:t, {self._now}) "
                    f"ON CONFLICT (trial_id) DO UPDATE SET beat_at = {self._now}"
                ),
                {"t": trial_id},
            )

    def drop_beat(self, trial_id: int) -> None:
        from sqlalchemy import text

        with self.engine.begin() as conn:
            conn.execute(
                text("DELETE FROM medscale_heartbeats WHERE trial_id = :t"), {"t": trial_id}
            )

    def stale(self, trial_ids: list[int]) -> list[int]:
        from sqlalchemy import text

        if not trial_ids:
            return []
        with self.engine.begin() as conn:
            now = conn.execute(text(f"SELECT {self._now}")).scalar_one()
            rows = conn.execute(text("SELECT trial_id, beat_at FROM medscale_heartbeats")).all()
        beats = {int(t): float(b) for t, b in rows}
        return [t for t in trial_ids if t not in beats or float(now) - beats[t] > self.grace_s]

    def claim(self, key: str, number: int) -> bool:
        from sqlalchemy import text

        with self.engine.begin() as conn:
            result = conn.execute(
                text(
                    "INSERT INTO medscale_claims (study_id, key, trial_number) "
                    "VALUES (:s, :k, :n) ON CONFLICT DO NOTHING"
                ),
                {"s": self.study_id, "k": key, "n": number},
            )
            return result.rowcount == 1

    def claims(self) -> dict[str, int]:
        from sqlalchemy import text

        with self.engine.begin() as conn:
            rows = conn.execute(
                text("SELECT key, trial_number FROM medscale_claims WHERE study_id = :s"),
                {"s": self.study_id},
            ).all()
        return {str(k): int(n) for k, n in rows}

    def claimed(self, key: str) -> bool:
        from sqlalchemy import text

        with self.engine.begin() as conn:
            row = conn.execute(
                text("SELECT 1 FROM medscale_claims WHERE study_id = :s AND key = :k"),
                {"s": self.study_id, "k": key},
            ).first()
        return row is not None

    def close(self) -> None:
        self.engine.dispose()


def _rdb_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDBStorage; SQLite gets WAL and ``BEGIN IMMEDIATE`` (without it two processes can
    pop the same WAITING trial and both tells of one trial succeed: measured)."""
    import warnings

    from sqlalchemy import event

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # alembic / SQLAlchemy deprecation chatter
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    if url.startswith("sqlite"):
        engine = storage.engine

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, record: Any) -> None:
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        engine.dispose()
    return storage


def _study(storage: Any, name: str) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name=name, load_if_exists=True)


_NETWORK_FS = ("nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "beegfs", "ceph", "fuse.glusterfs")


def _fs_type(path: Path) -> str:
    """The file-system type of ``path``'s mount (from /proc/mounts; "" where unknown)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    best, kind = "", ""
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        inside = len(parts) > 2 and (target + "/").startswith(parts[1].rstrip("/") + "/")
        if inside and len(parts[1]) >= len(best):
            best, kind = parts[1], parts[2]
    return kind


def open_ledger(url: str, name: str, *, heartbeat_s: float) -> Ledger:
    """Open (creating it if needed) the ledger at ``url`` for the campaign ``name``."""
    if url.startswith("journal:") or url.startswith("file://"):
        shared = url.startswith("file://")
        folder = Path(url.split("://", 1)[1] if shared else url.split(":", 1)[1])
        folder.mkdir(parents=True, exist_ok=True)
        return JournalLedger(url, folder, name, heartbeat_s, shared)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        if _fs_type(path.parent) in _NETWORK_FS:
            raise SpecError(
                f"ledger {url}: SQLite's WAL needs one host's shared memory and is not safe on "
                f"a network file system ({_fs_type(path.parent)}); use file://DIR or PostgreSQL"
            )
        return SqlLedger(url, name, heartbeat_s, path.with_name(path.name + ".lock"))
    if url.startswith("postgresql"):
        return SqlLedger(url, name, heartbeat_s, None)
    raise SpecError(
        f"ledger {url!r}: unknown kind; expected journal:DIR, file://DIR, sqlite:///PATH or "
        "postgresql+psycopg://USER@HOST:PORT/DB"
    )
