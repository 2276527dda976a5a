"""A real Celery worker, a real broker (Redis, and RabbitMQ with quorum queues), the real PostgreSQL
and the real encoder: every test runs once per broker."""

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from django.conf import settings
from django.db import connection
from kombu.exceptions import ChannelError

from catalog.models import Item, ItemVector
from catalog.services import item_save
from config.celery import app
from core.worker import worker_start
from recommendations.models import UserInterest
from recommendations.tasks import sweep_pending_embeddings
from tests.brokers import BROKER_KINDS, broker_default, broker_for
from tests.factories import ItemFactory, vector_of
from users.models import Activity
from users.services import activity_record

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WAIT_SECONDS = 90
QUEUES = ("interactive", "bulk")


def _wait_for(condition, what: str, log: "WorkerLog") -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}; worker log:\n{log.read_text()[-4000:]}")


@dataclass(frozen=True)
class WorkerLog:
    """The part of the shared worker's log written since one test began."""

    path: Path
    start: int

    def read_text(self) -> str:
        with open(self.path, "rb") as log:
            log.seek(self.start)
            return log.read().decode(errors="replace")


def _queued(channel, queue: str) -> int:
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:  # Redis keeps no empty list: a queue that does not exist holds nothing
        return 0


def _wait_until_idle(log: WorkerLog) -> None:
    """Until the worker runs and holds no task and none waits in its queues: what a test queued
    (a chain's later tasks too) is done before the next test's rows are written or flushed."""
    inspector = app.control.inspect(timeout=5, limit=1)

    def idle() -> bool:
        active, reserved = inspector.active(), inspector.reserved()
        if not active or not reserved or any(active.values()) or any(reserved.values()):
            return False
        with app.connection_for_write() as broker_connection:
            channel = broker_connection.default_channel
            return all(_queued(channel, name) == 0 for name in QUEUES)

    _wait_for(idle, "the worker to finish the test's tasks", log)


@pytest.fixture(scope="module", params=BROKER_KINDS)
def worker_process(request, django_db_setup, tmp_path_factory):
    """One worker for the module and broker: starting one loads torch and the encoder (6 s each time)."""
    if connection.settings_dict["ENGINE"] != "core.embedded_db":
        pytest.skip("the worker test points the worker at the test database of the embedded server")
    broker = broker_for(request.param)
    broker.use()
    broker.clear()
    log = tmp_path_factory.mktemp(f"worker-{broker.kind}") / "worker.log"
    process = worker_start(log=log, broker_url=broker.url)
    app.conf.task_always_eager = False
    try:
        whole = WorkerLog(path=log, start=0)
        _wait_for(lambda: "ready." in log.read_text(), "the worker to start", whole)
        _wait_for(lambda: "encoder loaded" in log.read_text(), "the worker to load the encoder", whole)
        yield log
    finally:
        app.conf.task_always_eager = True
        process.terminate()
        process.wait(timeout=30)
        broker.clear()
        broker_default().use()


@pytest.fixture
def worker(worker_process):
    """The shared worker, idle, and the part of its log this test writes; the test's tasks are
    done before the next test starts (as when each test stopped its own worker, warmly)."""
    _wait_until_idle(WorkerLog(path=worker_process, start=0))
    log = WorkerLog(path=worker_process, start=worker_process.stat().st_size)
    yield log
    _wait_until_idle(log)


def test_worker_embeds_a_new_item(worker):
    item = item_save(item=Item(external_id="kettle", title="Steel kettle", description="Boils a litre fast."))

    _wait_for(lambda: Item.objects.get(id=item.id).embedding_status == "ok", "the item vector", worker)

    item.refresh_from_db()
    assert item.embedding_model == "all-MiniLM-L6-v2"
    assert np.isclose(np.linalg.norm(vector_of(item)), 1.0, atol=1e-4)
    assert "catalog.Item embedded n=1" in worker.read_text()


def test_worker_embeds_an_activity_and_rebuilds_the_interest(worker, user):
    activity = activity_record(user=user, kind="chat", text="My parcel has not arrived after ten days")

    _wait_for(lambda: UserInterest.objects.filter(user=user).exists(), "the interest vector", worker)

    activity.refresh_from_db()
    assert activity.embedding_status == "ok"
    interest = UserInterest.objects.get(user=user)
    assert float(np.dot(interest.embedding, vector_of(activity))) > 0.999


def test_worker_sweep_picks_up_rows_whose_messages_were_lost(worker, user):
    # Rows written without any task queued, as after a broker restart.
    items = ItemFactory.create_batch(5)
    Activity.objects.create(user=user, kind="purchase", item=items[0], created_at="2026-10-01T00:00Z")
    type(user).objects.filter(id=user.id).update(interest_stale=True)

    sweep_pending_embeddings.delay()

    _wait_for(lambda: UserInterest.objects.filter(user=user).exists(), "the swept rows", worker)
    assert set(Item.objects.values_list("embedding_status", flat=True)) == {"ok"}


def test_worker_recomputes_the_precomputed_list_of_a_person_who_asked_before(worker, user):
    from recommendations.models import PrecomputedList
    from recommendations.serving.service import recommend_for_user

    items = ItemFactory.create_batch(4)
    recommend_for_user(user=user, k=3, log=False)  # their first request keeps their list
    kept = PrecomputedList.objects.get(user=user)
    chosen = items[0].id if items[0].id in kept.item_ids else kept.item_ids[0]

    activity_record(user=user, kind="purchase", item=Item.objects.get(id=chosen))

    _wait_for(
        lambda: PrecomputedList.objects.get(user=user).computed_at > kept.computed_at, "the list recomputed", worker
    )
    recomputed = PrecomputedList.objects.get(user=user)
    assert chosen not in recomputed.item_ids  # bought: seen, never recommended again
    assert recomputed.last_activity_id == Activity.objects.get(user=user).id


def test_rabbitmq_holds_the_tasks_in_durable_quorum_queues(worker):
    if not app.conf.broker_url.startswith("amqp"):
        pytest.skip("Redis has no queue types: this is about RabbitMQ")
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        pytest.skip("rabbitmqctl is not installed here")
    vhost = unquote(urlsplit(app.conf.broker_url).path[1:])

    listed = subprocess.run(
        [rabbitmqctl, "list_queues", "-p", vhost, "-q", "--no-table-headers", "name", "durable", "type"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    queues = {line.split()[0]: line.split()[1:] for line in listed.stdout.splitlines() if line.strip()}
    assert queues["interactive"] == ["true", "quorum"]
    assert queues["bulk"] == ["true", "quorum"]


def test_worker_computes_the_online_metrics_of_a_running_experiment(worker, user):
    from datetime import timedelta

    from django.utils import timezone

    from recommendations.experiments.services import ArmSpec, experiment_create
    from recommendations.models import Experiment, RecommendedItem
    from recommendations.serving.service import recommend_for_user
    from recommendations.tasks import refresh_experiments_metrics

    ItemFactory.create_batch(4)
    now = timezone.now()
    experiment = experiment_create(
        name="on the worker",
        surface="user",
        start_at=now - timedelta(minutes=1),
        end_at=now + timedelta(days=1),
        arms=[ArmSpec("a", None, 50), ArmSpec("b", None, 50)],
        created_by=None,
    )
    answer = recommend_for_user(user=user, k=3)

    refresh_experiments_metrics.delay()  # what beat sends, on the bulk queue

    _wait_for(lambda: Experiment.objects.get(pk=experiment.pk).metrics_computed_at is not None, "the metrics", worker)
    figures = Experiment.objects.get(pk=experiment.pk).metrics
    assert sum(row["people"] for row in figures["arms"]) == 1
    shown = RecommendedItem.objects.filter(recommendation_id=answer.recommendation_id).count()
    assert sum(row["impressions"] for row in figures["arms"]) == shown


def test_worker_trains_the_text_model_on_the_bulk_queue_and_activates_it(worker):
    from recommendations.models import TextModel
    from recommendations.tasks import train_text_model
    from tests.recommendations.conftest import community_words_world_build

    community_words_world_build()  # committed: the worker reads it

    assert settings.CELERY_TASK_ROUTES["recommendations.tasks.train_text_model"] == {"queue": "bulk"}
    assert settings.CELERY_BEAT_SCHEDULE["train-text-model"]["task"] == "recommendations.tasks.train_text_model"
    train_text_model.delay()

    _wait_for(lambda: TextModel.objects.filter(is_active=True).exists(), "the text model", worker)
    version = TextModel.objects.get(is_active=True)
    assert version.validation_metrics["ndcg@20"] > version.validation_metrics["frozen_ndcg@20"]
    assert "text model v1 trained" in worker.read_text()


def test_worker_sweep_builds_the_community_vector_of_a_reviewed_item(worker, user):
    from recommendations.models import CommunityVector

    item = item_save(item=Item(external_id="tarp", title="Rain tarp", description="A 3 x 3 m tarp."))
    _wait_for(lambda: Item.objects.get(id=item.id).embedding_status == "ok", "the item vector", worker)
    activity_record(user=user, kind="review", item=item, text="Kept the whole camp dry all night.")
    assert Item.objects.get(id=item.id).community_stale

    sweep_pending_embeddings.delay()

    _wait_for(lambda: CommunityVector.objects.filter(item=item).exists(), "the community vector", worker)
    _wait_for(lambda: not Item.objects.get(id=item.id).community_stale, "the mark cleared", worker)
    assert "community vectors rebuilt items=1 with_text=1" in worker.read_text()
    served = ItemVector.objects.get(item=item)
    assert not np.allclose(np.asarray(served.embedding), np.asarray(served.text_embedding))
