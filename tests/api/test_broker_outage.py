"""The broker goes down while people write: every write is answered as usual and kept, nothing
is queued twice, and the sweep's batch heals what could not be queued (issue #13, item 1).

A real Redis server of the test's own, on a free port, stopped and started again: the project's
Celery app publishes to it exactly as a web process does.
"""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings as django_settings

from core import queueing
from recommendations.models import UserInterest
from recommendations.vectors.embedding import embeddings_process_pending
from tests.api.conftest import client_for
from users.models import Activity, User

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


class Broker:
    """One redis-server process on a port of its own."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("the test's redis-server did not start")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)

    def queued(self, queue: str = "interactive") -> int:
        return int(redis.Redis.from_url(self.url).llen(queue))


def _use_broker(url: str | None, *, eager: bool) -> None:
    from config.celery import app

    app.conf.broker_url = url
    app.conf.task_always_eager = eager
    # The app keeps one connection pool per process, made on first use: drop it so that the next
    # publish connects to this URL (what a fresh web process would do).
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker(settings) -> Iterator[Broker]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    from config.celery import app

    # The test run's own broker (config.settings_test), not whatever app.conf holds now: put back
    # exactly that, so that later tests (a real worker's) publish where their worker listens.
    saved = django_settings.CELERY_BROKER_URL, app.conf.task_always_eager
    broker = Broker()
    broker.start()
    settings.CELERY_BROKER_URL = broker.url
    settings.CELERY_TASK_ALWAYS_EAGER = False
    _use_broker(broker.url, eager=False)
    try:
        yield broker
    finally:
        _use_broker(saved[0], eager=saved[1])
        if broker.process is not None and broker.process.poll() is None:
            broker.stop()


def _post_search(client, text: str, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post("/api/v1/activities/create/", {"kind": "search", "text": text}, format="json")


def test_writes_while_the_broker_is_down_are_answered_kept_once_and_healed_by_the_sweep(
    broker, person, django_capture_on_commit_callbacks
):
    client = client_for(person)
    assert _post_search(client, "a warm tent", django_capture_on_commit_callbacks).status_code == 201
    assert broker.queued() == 1  # up: the embedding task is queued as usual

    broker.stop()
    unqueued_before = queueing.unqueued_count()
    answers = [
        _post_search(client, f"a tent for {number} people", django_capture_on_commit_callbacks)
        for number in range(2, 7)
    ]

    assert [answer.status_code for answer in answers] == [201] * 5, [answer.content for answer in answers]
    assert {answer.json()["interest"]["status"] for answer in answers} == {"queued"}
    # Every acknowledged write is there exactly once, waiting for its vector.
    texts = list(Activity.objects.filter(user=person).values_list("text", flat=True))
    assert sorted(texts) == sorted(["a warm tent", *(f"a tent for {number} people" for number in range(2, 7))])
    assert Activity.objects.filter(user=person, embedding_status="pending").count() == 6
    assert queueing.unqueued_count() == unqueued_before + 5
    # Marked for the sweep, which rebuilds the person's interest after embedding their texts.
    assert User.objects.get(pk=person.pk).interest_stale is True

    ready = client_for(None).get("/api/v1/health/ready/")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["broker"]["ok"] is False

    broker.start()
    assert _post_search(client, "a tent for a family", django_capture_on_commit_callbacks).status_code == 201
    assert broker.queued() == 1  # back: queueing works again without a restart of the web process

    # What the sweep queues once the broker answers (sweep_pending_embeddings -> embed_pending).
    done = embeddings_process_pending()

    assert done["activities"] == 7 and done["users"] == 1
    assert not Activity.objects.filter(user=person, embedding_status="pending").exists()
    assert UserInterest.objects.filter(user=person).exists()
    assert User.objects.get(pk=person.pk).interest_stale is False
