"""deploy/'s layout on this machine across network namespaces (issue #15, item 3; core.netns_layout).

The slow test starts every host of deploy/README.md in a network namespace of its own (HAProxy
in front of two gunicorn hosts, a worker host with one Celery worker per queue, beat, a
PostgreSQL primary and its streaming replica, RabbitMQ and the cache's Redis), sends a few
hundred requests and writes through the load balancer (recommendations.layout_traffic) and
checks them end to end. The others check the teardown: whatever a run reached, nothing of it
stays (namespaces, links, bridge, hosts files, processes). They need root and `ip`, and the
slow one HAProxy (`make haproxy`) and redis-server (the broker is RabbitMQ where rabbitmq-server
is installed, else that Redis); they skip, saying which, where the machine lacks them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from core.netns_layout import NetnsLayout, Network, missing_requirements, netns_layout
from recommendations.layout_traffic import layout_traffic_run

# Apart from the slow test's (and the command's default rl- / 10.231.0.0/24), so a run of the
# command on the machine is never torn down by these.
PREFIX = "rlt-"
SUBNET = "10.231.1.0/24"


def _skip_without(*requirements: str) -> None:
    missing = [item for item in missing_requirements(broker="redis") if item.split()[0] in requirements]
    if missing:
        pytest.skip(f"this machine lacks {', '.join(missing)}")


def _gone(pid: int | None) -> bool:
    """The process has exited (a postmaster removes its pid file a moment before it exits)."""
    if pid is None:
        return True
    try:
        psutil.Process(pid).wait(timeout=10)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    return True


@pytest.fixture
def folder():
    # Not under pytest's basetemp (0700 per run): the database's own user must reach it.
    path = Path(tempfile.mkdtemp(prefix="netns-layout-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_start_that_fails_leaves_nothing_running(folder):
    _skip_without("root", "ip")
    layout = NetnsLayout(folder, prefix=PREFIX, subnet=SUBNET)

    def replica_fails() -> None:
        raise RuntimeError("the replica did not start")

    layout.replica.start = replica_fails  # fail after the primary runs
    with pytest.raises(RuntimeError, match="the replica did not start"):
        try:
            layout.start()
        finally:
            primary_pid = layout.primary.server.status().pid
            layout.stop()

    assert primary_pid is not None
    assert _gone(primary_pid)
    assert layout.network.leftovers() == []


def test_a_network_left_by_a_killed_run_is_cleared_by_the_next(folder):
    _skip_without("root", "ip")
    killed = Network(prefix=PREFIX, subnet=SUBNET)
    killed.up()
    sleeper = subprocess.Popen([*killed.launcher("worker"), "sleep", "300"])
    try:
        assert killed.leftovers()
        again = Network(prefix=PREFIX, subnet=SUBNET)
        again.up()
        assert sleeper.wait(timeout=10) != 0  # what ran in the old namespaces is gone
        again.down()
        assert again.leftovers() == []
    finally:
        killed.down()
        if sleeper.poll() is None:
            sleeper.kill()


def test_a_subnet_in_use_on_the_machine_is_refused(folder):
    _skip_without("root", "ip")
    first = Network(prefix=PREFIX, subnet=SUBNET)
    first.up()
    try:
        with pytest.raises(RuntimeError, match="in use on this machine"):
            Network(prefix="rlu-", subnet=SUBNET).up()
    finally:
        first.down()
    assert first.leftovers() == []


@pytest.mark.slow
def test_the_layout_serves_traffic_through_the_load_balancer_end_to_end(folder):
    # RabbitMQ, the recommended broker, where it is installed; else the broker host's Redis.
    broker = "redis" if missing_requirements(broker="rabbitmq") else "rabbitmq"
    missing = missing_requirements(broker=broker)
    if missing:
        pytest.skip(f"this machine lacks {', '.join(missing)}")
    lines: list[str] = [f"broker: {broker}"]
    environment = {"RECOMMENDER_ENCODER_MODEL": "all-MiniLM-L6-v2"}  # small and quick to load on every host
    with netns_layout(folder, broker=broker, environment=environment) as layout:
        try:
            report = layout_traffic_run(layout, people=8, rounds=10, log=lines.append)
        except Exception:
            print("\n".join(f"--- {name}\n{layout.log(name)[-2000:]}" for name in ("web1", "worker-interactive")))
            raise
        network = layout.network
        server_pids = [layout.primary.server.status().pid, layout.replica.server.status().pid]
    summary = "\n".join(lines + report.lines())
    print(summary)

    assert report.requests >= 300, summary
    assert report.unexpected == {}, summary  # nothing but 200 and 201: no 500, no 502/503 from HAProxy
    findings = report.findings
    assert findings.found == findings.acknowledged == 120, summary  # 8 people x (10 searches + 5 reviews)
    assert findings.intact and findings.settled, summary
    assert report.activity_vectors == findings.acknowledged, summary  # the worker embedded every text
    assert report.item_vectors == report.items == 60, summary
    assert report.replica_rows == findings.acknowledged, summary
    assert (network.address("db-replica"), "streaming") in report.streaming, summary
    assert report.replica_reads > 0, summary
    assert set(report.web_requests) == {"web1", "web2"} and min(report.web_requests.values()) > 0, summary
    assert report.passed, summary
    # Torn down: namespaces, links, bridge, hosts files and the servers' processes.
    assert network.leftovers() == []
    assert all(_gone(pid) for pid in server_pids)
