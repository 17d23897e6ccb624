"""A private PostgreSQL server (scripts/pg-up.sh) for the campaign tests, and a fresh empty
database on it for each test that asks for one."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PG_UP = REPO / "scripts" / "pg-up.sh"
PG_DOWN = REPO / "scripts" / "pg-down.sh"

#: Exit status of pg-up.sh when PostgreSQL is absent and cannot be installed here.
PG_UNAVAILABLE = 3
#: Installing the package (apt-get) may take minutes on a bare machine.
PG_UP_TIMEOUT_S = 600


@dataclass(frozen=True)
class PostgresServer:
    folder: Path  # the DIR of scripts/pg-up.sh
    url: str  # postgresql+psycopg://postgres@127.0.0.1:PORT/ledger


def pg_up(folder: Path) -> subprocess.CompletedProcess[str]:
    """Run scripts/pg-up.sh FOLDER (the URL on stdout, progress and errors on stderr)."""
    return subprocess.run(
        [str(PG_UP), str(folder)], capture_output=True, text=True, timeout=PG_UP_TIMEOUT_S
    )


def pg_down(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PG_DOWN), str(folder)], capture_output=True, text=True, timeout=120)


def start_or_skip(folder: Path) -> str:
    """Start a server in FOLDER and return its URL. Skips the test when PostgreSQL cannot be
    installed here; any other failure fails it (the folder is removed either way)."""
    try:
        up = pg_up(folder)
    except subprocess.TimeoutExpired as timeout:
        pg_down(folder)
        pytest.fail(f"scripts/pg-up.sh took over {PG_UP_TIMEOUT_S}s:\n{timeout.stderr}")
    if up.returncode != 0:
        pg_down(folder)
        shutil.rmtree(folder, ignore_errors=True)
        reason = up.stderr.strip()[-3000:]
        if up.returncode == PG_UNAVAILABLE:
            pytest.skip(f"no PostgreSQL server here: {reason}")
        pytest.fail(f"scripts/pg-up.sh failed (exit {up.returncode}):\n{reason}")
    return up.stdout.strip()


def plain_url(url: str) -> str:
    """The libpq form (postgresql://...) of a SQLAlchemy postgresql+psycopg:// URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the session, in a short folder (unix socket path limit), removed after."""
    folder = Path(tempfile.mkdtemp(prefix="mspg-", dir="/tmp"))
    url = start_or_skip(folder)
    try:
        yield PostgresServer(folder, url)
    finally:
        down = pg_down(folder)
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of the session server's ``ledger`` database (shared by all tests)."""
    return postgres_server.url


@pytest.fixture
def postgres_fresh_url(postgres_url: str) -> Iterator[str]:
    """SQLAlchemy URL of a new, empty database on the session server, dropped after the test
    (WITH (FORCE): connections the test left open are closed)."""
    psycopg = pytest.importorskip("psycopg")
    from psycopg import sql

    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = plain_url(postgres_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))
