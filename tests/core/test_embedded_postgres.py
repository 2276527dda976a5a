"""The embedded server, on a private data folder of its own (not the one the test run uses)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from core.embedded_postgres import EmbeddedPostgres

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path):
    server = EmbeddedPostgres(tmp_path / "pg")
    yield server
    server.stop()


def _query(server: EmbeddedPostgres, sql: str, dbname: str = "postgres"):
    with psycopg.connect(**server.connection_params(dbname), autocommit=True) as connection:
        cursor = connection.execute(sql)
        return cursor.fetchall() if cursor.description else None


def _ensure_running_in_another_process(data_dir: Path) -> int:
    code = (
        "import sys; from core.embedded_postgres import EmbeddedPostgres; "
        "print(EmbeddedPostgres(sys.argv[1]).ensure_running().pid)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return int(result.stdout.strip().splitlines()[-1])


def test_ensure_running_initialises_and_starts_postgres_with_pgvector(server):
    status = server.ensure_running(databases=("shop",))

    assert status.running and status.pid
    assert _query(server, "SHOW server_version")[0][0].startswith("18")
    _query(server, "CREATE EXTENSION IF NOT EXISTS vector", dbname="shop")
    version = _query(server, "SELECT extversion FROM pg_extension WHERE extname = 'vector'", dbname="shop")[0][0]
    assert version.startswith("0.8")


def test_second_process_reuses_the_running_server(server):
    first = server.ensure_running()

    pid_seen_by_other_process = _ensure_running_in_another_process(server.data_dir)

    assert pid_seen_by_other_process == first.pid
    assert server.status().pid == first.pid


def test_killed_server_is_restarted_with_its_data(server):
    first = server.ensure_running(databases=("shop",))
    _query(server, "CREATE TABLE kept (value int); INSERT INTO kept VALUES (42)", dbname="shop")

    os.kill(first.pid, signal.SIGKILL)
    psutil.Process(first.pid).wait(timeout=10)
    assert not server.status().running

    second = server.ensure_running()

    assert second.running and second.pid != first.pid
    assert _query(server, "SELECT value FROM kept", dbname="shop") == [(42,)]


def test_stale_lock_naming_an_unrelated_process_is_recovered(server):
    server.ensure_running()
    server.stop()
    # After a container restart the PID in postmaster.pid can belong to anything: here, us.
    pid_file = server.data_dir / "postmaster.pid"
    pid_file.write_text(
        f"{os.getpid()}\n{server.data_dir}\n{int(time.time())}\n5432\n{server.socket_dir}\n\n0 0\nready\n"
    )

    status = server.ensure_running()

    assert status.running and status.pid != os.getpid()
    assert _query(server, "SELECT 1") == [(1,)]


def test_stop_shuts_the_server_down_cleanly(server):
    pid = server.ensure_running().pid

    assert server.stop() is True

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not server.status().running
    assert "database system is shut down" in server.log_file.read_text()
    assert server.stop() is False
