"""A whole served system of its own, to break on purpose: the fault tests and `manage.py soak`.

Everything here is private to one run, so stopping a part never touches anybody else's: a
PostgreSQL cluster in its own data folder and socket (core.embedded_postgres), a redis-server on
a free port (and, with broker="rabbitmq", a RabbitMQ node of its own as the broker), and in
front of the database and the broker a TCP proxy that can cut the network between them and the
processes (a partition: open connections reset, new ones refused) and heal it again. The
processes are the production ones, started as the README says: gunicorn
(`gunicorn -c config/gunicorn.conf.py`, 2 workers), a Celery worker and Celery beat, all pointed at the
proxies through DATABASE_URL and CELERY_BROKER_URL, as a deployment points them at its servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from core.embedded_postgres import EmbeddedPostgres

DATABASE_NAME = "faults"
START_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition, *, what: str, seconds: float = START_SECONDS, every: float = 0.1) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise TimeoutError(f"timed out after {seconds:.0f} s waiting for {what}")


class TcpProxy:
    """127.0.0.1:<port> relayed to a TCP address or a Unix socket; cut() partitions, heal() mends.

    A cut resets every relayed connection and refuses new ones (the listening socket is closed),
    what a client sees when a link or a firewall between it and the server drops it. The port
    stays the same across cuts, so clients reconnect to it as they would to a server.
    """

    def __init__(self, target: tuple[str, int] | Path) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def _connect_target(self) -> socket.socket:
        if isinstance(self.target, Path):
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(str(self.target))
        else:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        return upstream

    def heal(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    start = heal

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: a reset, not a polite close, as when the path is gone.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    close = cut

    @property
    def is_cut(self) -> bool:
        return self._listener is None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _address = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = self._connect_target()
            except OSError:
                client.close()  # the server itself is down: the client sees its connection closed
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._connections.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._connections.discard(source)
                self._connections.discard(sink)


class PostgresCluster:
    """A PostgreSQL cluster of the run's own (data folder and socket), stopped and started at will.

    `server_options` go to EmbeddedPostgres (a network namespace and the addresses to listen on,
    for core.netns_layout); `database` is the one it creates and queries.
    """

    def __init__(self, data_dir: Path, *, database: str = DATABASE_NAME, **server_options: Any) -> None:
        self.server = EmbeddedPostgres(data_dir, **server_options)
        self.database = database

    def start(self) -> None:
        self.server.ensure_running(databases=(self.database,))

    def stop(self) -> None:
        self.server.stop()

    def kill(self) -> None:
        """SIGKILL the postmaster: a crash; the next start runs PostgreSQL's crash recovery."""
        status = self.server.status()
        if status.pid is not None:
            os.kill(status.pid, signal.SIGKILL)
            wait_until(lambda: not self.server.status().running, what="PostgreSQL to die", seconds=30)

    @property
    def socket_path(self) -> Path:
        return self.server.socket_dir / ".s.PGSQL.5432"

    def execute(self, sql: str) -> None:
        """One statement that returns no rows (ALTER SYSTEM), over the cluster's own socket."""
        with psycopg.connect(**self.server.connection_params(self.database), autocommit=True) as connection:
            connection.execute(sql)

    def query(self, sql: str, parameters: tuple | list = ()) -> list[tuple]:
        """Rows of one query over the cluster's own socket (never through a proxy)."""
        with psycopg.connect(**self.server.connection_params(self.database), autocommit=True) as connection:
            return list(connection.execute(sql, parameters).fetchall())


class ReplicaCluster(PostgresCluster):
    """A streaming replica of a PostgresCluster (a hot standby): made by a base backup on its
    first start, then replaying the primary's WAL (over the primary's socket, or over the
    network from `primary_host`); stop() and start() as for the primary."""

    def __init__(
        self, data_dir: Path, primary: PostgresCluster, *, primary_host: str | None = None, **server_options: Any
    ) -> None:
        super().__init__(data_dir, database=primary.database, **server_options)
        self.primary = primary
        self.primary_host = primary_host

    def start(self) -> None:
        if not (self.server.data_dir / "PG_VERSION").exists():
            self.server.replica_create(self.primary.server, primary_host=self.primary_host)
        self.server.ensure_running()


class RedisServer:
    """One redis-server on a port of its own (no persistence: a restart empties it, as a crash would).

    `launcher` runs it elsewhere (core.netns_layout: `ip netns exec <namespace>`), listening on
    `host`, an address of that namespace this machine reaches; a server on a network address
    needs a `password` (Redis refuses clients from other hosts without one: protected mode).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        launcher: Sequence[str] = (),
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self.launcher = list(launcher)
        self.password = password
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        self.process = subprocess.Popen(
            [*self.launcher, executable, "--port", str(self.port), "--bind", self.host]
            + ["--save", "", "--appendonly", "no"]
            + (["--requirepass", self.password] if self.password else []),
            stdout=subprocess.DEVNULL,
        )
        hello = f"AUTH {self.password}\r\nPING\r\n".encode() if self.password else b"PING\r\n"

        def answers() -> bool:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=1) as probe:
                probe.sendall(hello)
                time.sleep(0.05)
                return b"+PONG" in probe.recv(64)
            return False

        wait_until(answers, what="redis-server", seconds=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class RabbitmqNode:
    """A RabbitMQ node of the run's own: its own data folder, node name, ports, Erlang cookie (HOME
    in the folder) and configuration, one user and virtual host. The machine's own RabbitMQ
    (127.0.0.1:5672) is never touched. Its queues are on disk: a stop and start keeps them.

    `launcher` runs it elsewhere (core.netns_layout: in the broker host's namespace).
    """

    def __init__(
        self,
        folder: Path,
        *,
        password: str,
        host: str = "127.0.0.1",
        port: int | None = None,
        user: str = "recommender",
        vhost: str = "recommender",
        launcher: Sequence[str] = (),
    ) -> None:
        self.folder, self.host, self.password, self.user, self.vhost = folder, host, password, user, vhost
        self.port = port or free_port()
        # The node's distribution port (CLI tools, clustering): its own, not AMQP's port + 20000.
        self.distribution_port = free_port()
        self.launcher = list(launcher)
        self.process: subprocess.Popen | None = None

    def url(self, host: str | None = None, port: int | None = None) -> str:
        return f"amqp://{self.user}:{self.password}@{host or self.host}:{port or self.port}/{self.vhost}"

    def start(self) -> None:
        if not RABBITMQ_SERVER.exists():
            raise RuntimeError(f"{RABBITMQ_SERVER} is not installed (Debian's rabbitmq-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.default = {self.host}:{self.port}\n"
            f"default_user = {self.user}\n"
            f"default_pass = {self.password}\n"
            f"default_vhost = {self.vhost}\n"
            "default_permissions.configure = .*\n"
            "default_permissions.read = .*\n"
            "default_permissions.write = .*\n"
        )
        (self.folder / "enabled_plugins").write_text("[].\n")
        (self.folder / "rabbitmq-env.conf").write_text("")
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.folder),  # a fresh Erlang cookie, never the machine node's
            "RABBITMQ_NODENAME": f"recommender-{self.port}@localhost",
            "RABBITMQ_DIST_PORT": str(self.distribution_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.folder / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.folder / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_PID_FILE": str(self.folder / "rabbitmq.pid"),
        }
        self.process = process_start(
            [*self.launcher, str(RABBITMQ_SERVER)], env=env, log_path=self.folder / "rabbitmq.log"
        )

        def answers() -> bool:
            from kombu import Connection

            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited; see {self.folder / 'log'}")
            try:
                with Connection(self.url(), connect_timeout=2) as connection:
                    connection.ensure_connection(max_retries=1, timeout=2)
                return True
            except Exception:  # noqa: BLE001 - still starting: any failure means "not yet"
                return False

        wait_until(answers, what="RabbitMQ", seconds=120, every=1.0)

    def stop(self) -> None:
        if self.process is not None:
            process_stop(self.process)
            self.process = None


ROOT = Path(__file__).resolve().parent.parent


def manage_run(
    arguments: Sequence[str], *, env: dict[str, str], launcher: Sequence[str] = (), timeout: float = 600
) -> str:
    """`manage.py <arguments>` as a one-off process with the run's settings; its output, or an error."""
    result = subprocess.run(
        [*launcher, sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(arguments)} failed:\n{result.stdout[-2000:]}{result.stderr[-4000:]}")
    return result.stdout


def process_start(command: Sequence[str], *, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """A long-running process of the project in a session of its own, its output appended to log_path."""
    log = open(log_path, "a")
    try:
        return subprocess.Popen(
            list(command), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        log.close()


def process_stop(process: subprocess.Popen, *, kill: bool = False) -> None:
    """Stop the process and its whole group (a prefork worker's child, gunicorn's workers)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def people_create(manage: Callable[..., str], count: int, *, prefix: str, staff: bool = False) -> list[tuple[int, str]]:
    """(id, API token) of `count` new people, made by the served system's own code (manage.py shell)."""
    script = (
        "import json\n"
        "from django.contrib.auth import get_user_model\n"
        "from rest_framework.authtoken.models import Token\n"
        "people = []\n"
        f"for number in range({count}):\n"
        f"    person = get_user_model().objects.create_user(username=f'{prefix}-{{number}}', is_staff={staff})\n"
        "    people.append([person.id, Token.objects.create(user=person).key])\n"
        "print('PEOPLE=' + json.dumps(people))\n"
    )
    output = manage("shell", "-c", script)
    line = next(line for line in output.splitlines() if line.startswith("PEOPLE="))
    return [(int(person_id), key) for person_id, key in json.loads(line.removeprefix("PEOPLE="))]


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]
    seconds: float

    def json(self) -> dict:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: dict | None = None,
    headers: dict | None = None,
    timeout: float = 10,
) -> Response:
    """One HTTP request as a client sends it; a refused or timed-out one is status 0."""
    request_headers = {"Accept": "application/json", **(headers or {})}
    if token:
        request_headers["Authorization"] = f"Token {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=request_headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return Response(answer.status, answer.read(), dict(answer.headers), time.monotonic() - started)
    except urllib.error.HTTPError as error:
        return Response(error.code, error.read(), dict(error.headers), time.monotonic() - started)
    except (urllib.error.URLError, OSError, TimeoutError):
        return Response(0, b"", {}, time.monotonic() - started)


@dataclass
class FaultStack:
    """The cluster, the broker, their proxies and the three kinds of process, in one folder."""

    folder: Path
    web_workers: int = 2
    environment: dict[str, str] = field(default_factory=dict)
    # Streaming replicas of the cluster, each behind a proxy of its own (DATABASE_REPLICA_URLS).
    replicas: int = 0
    # PostgreSQL settings (ALTER SYSTEM) of the primary, copied to its replicas by their base backup.
    postgres_settings: dict[str, str] = field(default_factory=dict)
    # The Celery broker: "redis" (the redis-server is the broker and the cache) or "rabbitmq" (a
    # node of the run's own is the broker, the redis-server only the shared cache, as deploy/ says).
    broker: str = "redis"

    def __post_init__(self) -> None:
        if self.broker not in ("redis", "rabbitmq"):
            raise ValueError(f"broker must be redis or rabbitmq, not {self.broker!r}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.postgres = PostgresCluster(self.folder / "postgres")
        self.redis = RedisServer()
        self.rabbitmq = (
            RabbitmqNode(self.folder / "rabbitmq", password="fault-stack-only") if self.broker == "rabbitmq" else None
        )
        # What the broker faults stop and start, and what broker_proxy stands in front of.
        self.broker_server: RedisServer | RabbitmqNode = self.rabbitmq or self.redis
        self.database_proxy = TcpProxy(self.postgres.socket_path)
        self.replica_servers = [
            ReplicaCluster(self.folder / f"replica-{number}", self.postgres) for number in range(1, self.replicas + 1)
        ]
        self.replica_proxies = [TcpProxy(replica.socket_path) for replica in self.replica_servers]
        self.broker_proxy = TcpProxy(("127.0.0.1", self.broker_server.port))
        self.web_port = free_port()
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": "fault-stack-only",
            "DJANGO_DEBUG": "false",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.database_proxy.port}/{DATABASE_NAME}",
            "DATABASE_CONNECT_TIMEOUT": "3",
            "DATABASE_REPLICA_URLS": ",".join(
                f"postgres://postgres@127.0.0.1:{proxy.port}/{DATABASE_NAME}" for proxy in self.replica_proxies
            ),
            **self._broker_env(),
            "RECOMMENDER_SWEEP_SECONDS": "5",
            "RECOMMENDER_ENCODER_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            # A web process loads torch and the encoder on its first readiness probe: on a busy
            # shared machine that took over gunicorn's default 30 s, and gunicorn killed it.
            "GUNICORN_CMD_ARGS": "--timeout 120",
            "GUNICORN_BIND": f"127.0.0.1:{self.web_port}",
            "WEB_CONCURRENCY": str(self.web_workers),
            **self.environment,
        }

    def _broker_env(self) -> dict[str, str]:
        if self.rabbitmq is not None:
            # The cache is a server of its own beside RabbitMQ: a broker fault leaves it alone.
            return {
                "CELERY_BROKER_URL": self.rabbitmq.url(port=self.broker_proxy.port),
                "DJANGO_CACHE_URL": f"redis://127.0.0.1:{self.redis.port}/1",
            }
        return {
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.broker_proxy.port}/0",
            "DJANGO_CACHE_URL": f"redis://127.0.0.1:{self.broker_proxy.port}/1",
        }

    def manage(self, *arguments: str, timeout: float = 600) -> str:
        return manage_run(arguments, env=self.env(), timeout=timeout)

    # --- the servers ------------------------------------------------------------------

    def start_servers(self) -> None:
        self.postgres.start()
        for name, value in self.postgres_settings.items():
            self.postgres.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        if self.postgres_settings:
            self.postgres.query("SELECT pg_reload_conf()")
        self.redis.start()
        if self.rabbitmq is not None:
            self.rabbitmq.start()
        self.database_proxy.start()
        self.broker_proxy.start()
        # Replicas before the schema: the tables and their vector indexes reach them through
        # replication, as in production (a replica never migrates or builds an index).
        for replica, proxy in zip(self.replica_servers, self.replica_proxies, strict=True):
            replica.start()
            proxy.start()
        self.manage("migrate", "--no-input")
        self.manage("collectstatic", "--no-input")  # production serves the hashed copies
        # Once, before web and worker processes start: the first load on a machine exports the
        # encoder to ONNX (about 10 s), which two processes at once would each do.
        self.manage("shell", "-c", "from recommendations.ml.encoder import get_encoder; get_encoder()")

    def people(self, count: int, *, prefix: str = "fault") -> list[tuple[int, str]]:
        """(id, API token) of `count` new people, made by the stack's own code."""
        return people_create(self.manage, count, prefix=prefix)

    # --- the processes ----------------------------------------------------------------

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        process = process_start(command, env=self.env(), log_path=self.folder / f"{name}.log")
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_web(self) -> None:
        # The README's production command (what `make serve` runs), on the run's own port.
        bin_dir = Path(sys.executable).parent
        self._spawn("web", [str(bin_dir / "gunicorn"), "-c", "config/gunicorn.conf.py", "--access-logfile", "-"])
        wait_until(
            lambda: http("GET", f"{self.base_url}/api/v1/health/live/", timeout=2).status == 200,
            what="gunicorn",
        )

    def start_worker(self) -> None:
        before = self.log("worker").count("ready.")
        self._spawn(
            "worker",
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "interactive,bulk"]
            + ["--concurrency=1", "--without-gossip", "--without-mingle", "-l", "info"],
        )
        wait_until(lambda: self.log("worker").count("ready.") > before, what="the Celery worker")

    def start_beat(self) -> None:
        self._spawn(
            "beat",
            [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "info"]
            + ["-s", str(self.folder / "celerybeat-schedule")],
        )

    def stop_process(self, name: str, *, kill: bool = False) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            process_stop(process, kill=kill)

    def worker_child_pid(self) -> int | None:
        """The pid of the worker's pool process (the one that runs tasks), if it has one."""
        import psutil

        process = self.processes.get("worker")
        if process is None:
            return None
        children = psutil.Process(process.pid).children()
        return children[0].pid if children else None

    def stop(self) -> None:
        for name in list(self.processes):
            self.stop_process(name, kill=True)
        self.database_proxy.close()
        self.broker_proxy.close()
        self.redis.stop()
        if self.rabbitmq is not None:
            self.rabbitmq.stop()
        for replica, proxy in zip(self.replica_servers, self.replica_proxies, strict=True):
            proxy.close()
            with contextlib.suppress(Exception):
                replica.stop()
        with contextlib.suppress(Exception):
            self.postgres.stop()


@contextlib.contextmanager
def fault_stack(folder: Path, **options) -> Iterator[FaultStack]:
    stack = FaultStack(folder, **options)
    try:
        stack.start_servers()
        yield stack
    finally:
        stack.stop()
