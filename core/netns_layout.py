"""The production layout of deploy/ on one machine, one network namespace per host (issue #15, item 3).

Each host of deploy/README.md gets a network namespace of its own (`ip netns`), joined to the
others by a veth link on one bridge, as machines on one network: lb (HAProxy with
deploy/haproxy.cfg, unchanged), web1 and web2 (gunicorn, `config/gunicorn.conf.py`), worker (one
Celery worker per queue, as `recommender-worker@.service`), beat, db-primary and db-replica
(the embedded PostgreSQL, the replica a streaming hot standby made with pg_basebackup over the
network), broker (RabbitMQ, and the Redis of the shared cache: deploy/README.md puts the cache
"on the broker or cache host"). Every process reads the settings of
deploy/recommender.env.example, with only the secrets and this machine's paths filled in; the
host names of that file (db-primary.internal, broker.internal, ...) resolve inside each
namespace through its own hosts file (/etc/netns/<namespace>/hosts, which `ip netns exec`
mounts over /etc/hosts). The machine itself has an address on the bridge, the client's.

The servers and processes are core.fault_stack's (PostgresCluster, ReplicaCluster, RedisServer,
process_start), started with `ip netns exec <namespace>` in front. Everything is torn down on
the way out, also after a failure: processes stopped, then whatever still runs in a namespace
killed, the namespaces, links, bridge and hosts files removed (`NetnsLayout.stop`).

Needs root and iproute2 (`ip`), redis-server, haproxy, and for the RabbitMQ broker
rabbitmq-server (else `broker="redis"`: a redis-server is the broker too).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.fault_stack import (
    RABBITMQ_SERVER,
    ROOT,
    PostgresCluster,
    RabbitmqNode,
    RedisServer,
    ReplicaCluster,
    http,
    manage_run,
    people_create,
    process_start,
    process_stop,
    wait_until,
)

logger = logging.getLogger(__name__)

DATABASE = "recommender"
DATABASE_USER = "recommender"
RABBITMQ_VHOST = "recommender"
WEB_PORT = 8000
# (host, its number in the subnet, the names deploy/recommender.env.example and haproxy.cfg call it)
HOSTS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("lb", 10, ("lb.internal",)),
    ("web1", 11, ("web1.internal",)),
    ("web2", 12, ("web2.internal",)),
    ("worker", 21, ("worker.internal",)),
    ("beat", 22, ("beat.internal",)),
    ("db-primary", 31, ("db-primary.internal",)),
    ("db-replica", 32, ("db-replica-1.internal",)),
    ("broker", 41, ("broker.internal", "cache.internal")),
)
ENV_EXAMPLE = ROOT / "deploy" / "recommender.env.example"
START_SECONDS = 300
# A web host asked directly, as HAProxy's check asks it (haproxy.cfg: hdr Host localhost).
LOCAL = {"Host": "localhost"}


def missing_requirements(*, broker: str = "rabbitmq") -> list[str]:
    """What this machine lacks to run the layout (empty: it can)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces)")
    for program in ("ip", "redis-server", "haproxy"):
        if shutil.which(program) is None:
            missing.append(program)
    if broker == "rabbitmq" and not RABBITMQ_SERVER.exists():
        missing.append(str(RABBITMQ_SERVER))
    return missing


def _ip(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(arguments)} failed: {result.stderr.strip()}")
    return result


class Network:
    """The namespaces, their veth links and the bridge that joins them; the machine is .1 on it.

    Names start with `prefix` (namespaces `<prefix><host>`, the bridge `<prefix>br`, host ends
    of the links `<prefix>v<number>`), so two runs with different prefixes and subnets never
    touch each other's.
    """

    def __init__(self, *, prefix: str, subnet: str) -> None:
        self.prefix = prefix
        self.subnet = ipaddress.ip_network(subnet)
        if self.subnet.prefixlen > 24 or len(f"{prefix}br") > 15:
            raise ValueError("the subnet must be a /24 or larger and the prefix at most 12 characters")
        self.bridge = f"{prefix}br"

    def namespace(self, host: str) -> str:
        return f"{self.prefix}{host}"

    def address(self, host: str) -> str:
        number = next(number for name, number, _ in HOSTS if name == host)
        return str(self.subnet.network_address + number)

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def launcher(self, host: str) -> list[str]:
        """The command prefix that runs a program on `host`."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def _hosts_folder(self, host: str) -> Path:
        return Path("/etc/netns") / self.namespace(host)

    def up(self) -> None:
        self.down()  # what a run with this prefix left behind when it was killed
        taken = _ip("-o", "-4", "addr", "show").stdout
        for line in taken.splitlines():
            address = line.split()[3]
            if ipaddress.ip_interface(address).network.overlaps(self.subnet):
                raise RuntimeError(f"{self.subnet} is in use on this machine ({line.split()[1]}): choose another")
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        hosts_file = "127.0.0.1 localhost\n" + "".join(
            f"{self.address(name)} {' '.join(names)} {name}\n" for name, _, names in HOSTS
        )
        for host, number, _ in HOSTS:
            namespace, link = self.namespace(host), f"{self.prefix}v{number}"
            _ip("netns", "add", namespace)
            _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _ip("link", "set", link, "master", self.bridge, "up")
            _ip("-n", namespace, "addr", "add", f"{self.address(host)}/{self.subnet.prefixlen}", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            self._hosts_folder(host).mkdir(parents=True, exist_ok=True)
            (self._hosts_folder(host) / "hosts").write_text(hosts_file)
        logger.info("network up: %d namespaces on %s (%s)", len(HOSTS), self.bridge, self.subnet)

    def leftovers(self) -> list[str]:
        """Namespaces, links and hosts files of this prefix that exist now (empty once down)."""
        ours = {self.namespace(host) for host, _, _ in HOSTS}
        namespaces = [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]
        links = [line.split(":")[1].strip().split("@")[0] for line in _ip("-o", "link", "show").stdout.splitlines()]
        found = [name for name in namespaces if name in ours]
        found += [name for name in links if name == self.bridge or name.startswith(f"{self.prefix}v")]
        found += [str(self._hosts_folder(host)) for host, _, _ in HOSTS if self._hosts_folder(host).exists()]
        return found

    def down(self) -> None:
        """Kill whatever still runs in the namespaces, then remove them, the links and the bridge.

        A namespace outlives `ip netns del` while a process is in it (an epmd that RabbitMQ
        left, a postgres backend), so the processes go first.
        """
        existing = set(_ip("netns", "list").stdout.split())
        for host, number, _ in HOSTS:
            namespace = self.namespace(host)
            if namespace in existing:
                for _ in range(50):
                    pids = [int(pid) for pid in _ip("netns", "pids", namespace, check=False).stdout.split()]
                    if not pids:
                        break
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, 9)
                    time.sleep(0.1)
                _ip("netns", "del", namespace, check=False)
            _ip("link", "del", f"{self.prefix}v{number}", check=False)
            shutil.rmtree(self._hosts_folder(host), ignore_errors=True)
        _ip("link", "del", self.bridge, check=False)


@dataclass
class NetnsLayout:
    """deploy/'s layout across namespaces: start(), then clients reach `base_url`; stop() always."""

    folder: Path
    prefix: str = "rl-"
    subnet: str = "10.231.0.0/24"
    # "rabbitmq" (deploy's recommendation) or "redis" (a redis-server on the broker host).
    broker: str = "rabbitmq"
    # Settings over the environment file's, for every process (the encoder, thread counts).
    environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.broker not in ("rabbitmq", "redis"):
            raise ValueError(f"broker must be rabbitmq or redis, not {self.broker!r}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.network = Network(prefix=self.prefix, subnet=self.subnet)
        # This run's secrets: the database's and the broker's password, Django's key.
        self.password = secrets.token_urlsafe(16)
        self.secret_key = secrets.token_urlsafe(50)
        net = self.network
        self.primary = PostgresCluster(
            self.folder / "db-primary",
            database=DATABASE,
            listen_addresses=net.address("db-primary"),
            network_namespace=net.namespace("db-primary"),
        )
        self.replica = ReplicaCluster(
            self.folder / "db-replica",
            self.primary,
            primary_host=net.address("db-primary"),
            listen_addresses=net.address("db-replica"),
            network_namespace=net.namespace("db-replica"),
        )
        self.redis = RedisServer(
            host=net.address("broker"), port=6379, launcher=net.launcher("broker"), password=self.password
        )
        # In the broker's namespace, with an epmd of its own there, on deploy's port.
        self.rabbitmq = RabbitmqNode(
            self.folder / "rabbitmq",
            launcher=net.launcher("broker"),
            host=net.address("broker"),
            port=5672,
            user=DATABASE_USER,
            password=self.password,
            vhost=RABBITMQ_VHOST,
        )
        self.processes: dict[str, subprocess.Popen] = {}

    # --- where things are ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The load balancer, as a client on the network reaches it."""
        return f"http://{self.network.address('lb')}"

    def web_url(self, host: str) -> str:
        return f"http://{self.network.address(host)}:{WEB_PORT}"

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def env(self) -> dict[str, str]:
        """deploy/recommender.env.example, secrets and this machine's paths filled in."""
        example = {}
        for line in ENV_EXAMPLE.read_text().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                example[name] = value
        database = f"postgres://{DATABASE_USER}:{self.password}@%s:5432/{DATABASE}"
        redis = f"redis://:{self.password}@%s:6379/%d"
        broker = self.rabbitmq.url("broker.internal") if self.broker == "rabbitmq" else redis % ("broker.internal", 0)
        return {
            **os.environ,
            **example,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": self.secret_key,
            # The clients ask for the load balancer by its address; its health check says localhost.
            "DJANGO_ALLOWED_HOSTS": f"{self.network.address('lb')},localhost",
            "DJANGO_CSRF_TRUSTED_ORIGINS": self.base_url,
            "DATABASE_URL": database % "db-primary.internal",
            "DATABASE_REPLICA_URLS": database % "db-replica-1.internal",
            "CELERY_BROKER_URL": broker,
            "DJANGO_CACHE_URL": redis % ("cache.internal", 1),
            # One local folder for the converted encoder, made once before the hosts start.
            "RECOMMENDER_ENCODER_CACHE_DIR": str(ROOT / "var" / "onnx"),
            # 2 cores shared by every host here: one gunicorn worker per web host, fewer threads.
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "4",
            "GUNICORN_BIND": f"0.0.0.0:{WEB_PORT}",  # recommender-web.service's Environment=
            # A process loads torch on a busy machine slower than gunicorn's default 30 s.
            "GUNICORN_CMD_ARGS": "--timeout 120",
            "PYTHONUNBUFFERED": "1",
            **self.environment,
        }

    def manage(self, *arguments: str, timeout: float = 600) -> str:
        """A one-off `manage.py` on the worker host (migrations, people), as an operator runs it."""
        return manage_run(arguments, env=self.env(), launcher=self.network.launcher("worker"), timeout=timeout)

    def people(self, count: int, *, prefix: str, staff: bool = False) -> list[tuple[int, str]]:
        return people_create(self.manage, count, prefix=prefix, staff=staff)

    # --- start and stop ---------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        self.network.up()
        self._databases_start()
        self.redis.start()
        if self.broker == "rabbitmq":
            self.rabbitmq.start()
        logger.info("servers up in %.0f s", time.monotonic() - started)
        self.manage("migrate", "--no-input")
        self.manage("collectstatic", "--no-input", "--verbosity", "0")
        # Once, before the hosts start: the first load exports the encoder to ONNX, which
        # several processes at once would each do.
        self.manage("shell", "-c", "from recommendations.ml.encoder import get_encoder; get_encoder()")
        bin_dir = Path(sys.executable).parent
        gunicorn = [str(bin_dir / "gunicorn"), "-c", "config/gunicorn.conf.py", "--access-logfile", "-"]
        celery = [sys.executable, "-m", "celery", "-A", "config"]
        # The commands of deploy/systemd/ (concurrency 1: two cores shared by every host here).
        for queue in ("interactive", "bulk"):
            self._spawn(
                f"worker-{queue}",
                "worker",
                [*celery, "worker", "-Q", queue, "-n", f"{queue}@worker", "--concurrency=1"]
                + ["--without-gossip", "--without-mingle", "-l", "info"],
            )
        self._spawn("beat", "beat", [*celery, "beat", "-l", "info", "-s", str(self.folder / "celerybeat-schedule")])
        for web in ("web1", "web2"):
            self._spawn(web, web, gunicorn)
        for web in ("web1", "web2"):
            # Ready once the encoder is loaded (503 "warming" until then).
            wait_until(
                lambda web=web: (
                    self._running(web)
                    and http("GET", f"{self.web_url(web)}/api/v1/health/ready/", headers=LOCAL, timeout=30).status
                    == 200
                ),
                what=f"{web} ready",
                seconds=START_SECONDS,
                every=1.0,
            )
        for queue in ("interactive", "bulk"):
            wait_until(
                lambda queue=queue: self._running(f"worker-{queue}") and "ready." in self.log(f"worker-{queue}"),
                what=f"the {queue} worker",
                seconds=START_SECONDS,
                every=1.0,
            )
        self._spawn("haproxy", "lb", ["haproxy", "-f", str(ROOT / "deploy" / "haproxy.cfg"), "-db"])
        wait_until(
            lambda: (
                self._running("haproxy")
                and http("GET", f"{self.base_url}/api/v1/health/ready/", timeout=10).status == 200
            ),
            what="the load balancer to answer ready",
            seconds=60,
            every=0.5,
        )
        logger.info("layout up in %.0f s", time.monotonic() - started)

    def _databases_start(self) -> None:
        self.primary.start()
        # The application's own role and database, reached over the network with a password;
        # the extension made by the superuser (pgvector is not a trusted extension).
        self.primary.execute(f"CREATE ROLE {DATABASE_USER} LOGIN PASSWORD '{self.password}'")
        self.primary.execute(f"ALTER DATABASE {DATABASE} OWNER TO {DATABASE_USER}")
        self.primary.execute("CREATE EXTENSION IF NOT EXISTS vector")
        hba = self.primary.server.data_dir / "pg_hba.conf"
        hba.write_text(
            hba.read_text()
            + f"host {DATABASE} {DATABASE_USER} {self.network.subnet} scram-sha-256\n"
            # Streaming replication from the replica host only.
            + f"host replication postgres {self.network.address('db-replica')}/32 trust\n"
        )
        self.primary.query("SELECT pg_reload_conf()")
        self.replica.start()

    def _spawn(self, name: str, host: str, command: list[str]) -> subprocess.Popen:
        process = process_start(
            [*self.network.launcher(host), *command], env=self.env(), log_path=self.folder / f"{name}.log"
        )
        self.processes[name] = process
        return process

    def _running(self, name: str) -> bool:
        """True while the process runs; one that exited fails the start at once, with its log."""
        if self.processes[name].poll() is None:
            return True
        raise RuntimeError(f"{name} exited with {self.processes[name].returncode}:\n{self.log(name)[-3000:]}")

    def stop(self) -> None:
        """Everything down, whatever state the start reached; the network last."""
        for name in list(self.processes):
            with contextlib.suppress(Exception):
                process_stop(self.processes.pop(name))
        for server in (self.rabbitmq, self.redis, self.replica, self.primary):
            with contextlib.suppress(Exception):
                server.stop()
        self.network.down()


@contextlib.contextmanager
def netns_layout(folder: Path, **options) -> Iterator[NetnsLayout]:
    layout = NetnsLayout(folder, **options)
    try:
        layout.start()
        yield layout
    finally:
        layout.stop()
