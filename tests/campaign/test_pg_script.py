"""scripts/pg-up.sh and scripts/pg-down.sh: a private PostgreSQL server on loopback."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.campaign.conftest import PG_UP, pg_down, pg_up, plain_url, start_or_skip

pytestmark = pytest.mark.real

psycopg = pytest.importorskip("psycopg")


def _query(url: str, statement: str):
    with psycopg.connect(plain_url(url), connect_timeout=10) as conn:
        return conn.execute(statement).fetchone()[0]


def _pid_alive(pid: int) -> bool:
    """Running, not a zombie (pid 1 of a container may not reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_server_answers(postgres_url):
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert postgres_url.endswith("/ledger")
    assert _query(postgres_url, "select version()").startswith("PostgreSQL ")
    assert _query(postgres_url, "select current_database()") == "ledger"


def test_server_listens_on_loopback_only(postgres_url):
    assert _query(postgres_url, "SHOW listen_addresses") == "127.0.0.1"
    assert str(_query(postgres_url, "select inet_server_addr()")) == "127.0.0.1"


def test_pg_up_is_idempotent(postgres_server):
    # The same server answers: not restarted (its pid file is unchanged), whatever the load.
    postmaster = postgres_server.folder / "data" / "postmaster.pid"
    before = postmaster.read_text()
    again = pg_up(postgres_server.folder)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == postgres_server.url
    assert "already up" in again.stderr
    assert postmaster.read_text() == before
    assert (postgres_server.folder / "url").read_text().strip() == postgres_server.url


def test_fresh_url_is_a_new_empty_database(postgres_url, postgres_fresh_url):
    assert postgres_fresh_url != postgres_url
    assert postgres_fresh_url.startswith(postgres_url.rsplit("/", 1)[0] + "/")
    name = postgres_fresh_url.rsplit("/", 1)[1]
    assert _query(postgres_fresh_url, "select current_database()") == name
    tables = "select count(*) from information_schema.tables where table_schema = 'public'"
    assert _query(postgres_fresh_url, tables) == 0


def test_pg_up_refuses_a_long_dir():
    folder = Path("/tmp") / ("x" * 90)
    up = subprocess.run([str(PG_UP), str(folder)], capture_output=True, text=True, timeout=600)
    assert up.returncode == 1 and up.stdout == ""
    assert "at most 80 characters" in up.stderr
    assert not folder.exists()


def test_pg_down_stops_the_server_and_removes_dir():
    folder = Path(tempfile.mkdtemp(prefix="mspg-down-", dir="/tmp"))
    try:
        url = start_or_skip(folder)
        assert url != ""
        assert _query(url, "select 1") == 1
        pid = int((folder / "data" / "postmaster.pid").read_text().split()[0])
        assert _pid_alive(pid)

        down = pg_down(folder)
        assert down.returncode == 0, down.stderr
        assert not folder.exists()
        assert not _pid_alive(pid)
        with pytest.raises(psycopg.OperationalError):
            _query(url, "select 1")

        again = pg_down(folder)  # idempotent
        assert again.returncode == 0, again.stderr
    finally:
        pg_down(folder)
        shutil.rmtree(folder, ignore_errors=True)
