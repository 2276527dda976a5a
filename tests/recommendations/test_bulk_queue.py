"""Bulk work cannot starve interactive work (issue #13 M3): a real worker per queue, as the
README tells deployments to run them, the real broker, database and encoder.

Before: a batch of 100 long reviews became 100 tasks on the interactive queue, and another
person's review waited behind all of them (34 s instead of 0.5 s). Now the batch's texts are one
task on the bulk queue, and the single review is embedded by the interactive worker meanwhile.
"""

import subprocess
import time

import pytest
import redis
from django.conf import settings
from django.db import connection

from config.celery import app
from core.models import EmbeddingStatus
from core.worker import worker_start
from tests.api.conftest import client_for
from tests.factories import ItemFactory, UserFactory
from users.models import Activity

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BROKER_URL = settings.CELERY_BROKER_URL
WAIT_SECONDS = 120
BATCH = 50
RECEIVED_BATCH = "Task recommendations.tasks.embed_activity_batch["
RECEIVED_SINGLE = "Task recommendations.tasks.embed_activity["
WORDS = "waterproof tent pitched on a windy ridge kept us dry through three nights of rain and hail".split()


def _wait_for(condition, what: str, logs) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
    pytest.fail(f"timed out waiting for {what}; worker logs:\n{tails}")


@pytest.fixture(scope="module")
def workers(django_db_setup, tmp_path_factory):
    """One worker on the interactive queue and one on the bulk queue, one encoder thread each."""
    broker = redis.Redis.from_url(BROKER_URL)
    broker.ping()
    broker.flushdb()
    if connection.settings_dict["ENGINE"] != "core.embedded_db":
        pytest.skip("the workers are pointed at the test database of the embedded server")
    folder = tmp_path_factory.mktemp("workers")
    logs = {queue: folder / f"{queue}.log" for queue in ("interactive", "bulk")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECOMMENDER_ENCODER_THREADS", "1")  # two workers share the machine's cores
        processes = [
            worker_start(log=log, broker_url=BROKER_URL, queues=queue, hostname=f"{queue}@%h")
            for queue, log in logs.items()
        ]
    app.conf.task_always_eager = False
    try:
        for log in logs.values():
            _wait_for(lambda log=log: "encoder loaded" in log.read_text(), f"{log.name} to load", logs.values())
        yield logs
    finally:
        app.conf.task_always_eager = True
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)  # a warm shutdown finishes the task in hand
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        broker.flushdb()


def test_another_persons_review_is_embedded_while_a_large_batch_is_encoded(workers, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "TEXT_BYTES_PER_DAY": 0, "ACTIVITIES_PER_MINUTE": 0}
    bulk_writer, reviewer = UserFactory(), UserFactory()
    item = ItemFactory()
    # 50 different reviews of about 2,000 characters: each fills the encoder's 256 tokens.
    texts = [" ".join(WORDS[(number + shift) % len(WORDS)] for shift in range(300)) for number in range(BATCH)]
    batch = client_for(bulk_writer).post(
        "/api/v1/activities/batch/",
        {"activities": [{"kind": "review", "item": item.id, "text": text} for text in texts]},
        format="json",
    )
    assert batch.status_code == 201, batch.json()
    _wait_for(
        lambda: RECEIVED_BATCH in workers["bulk"].read_text(),
        "the bulk worker to take the batch",
        workers.values(),
    )

    review = client_for(reviewer).post(
        "/api/v1/activities/create/",
        {"kind": "review", "item": item.id, "text": "Kept me dry on a three-day hike in the rain."},
        format="json",
    )
    assert review.status_code == 201
    review_id = review.json()["activities"][0]["id"]
    _wait_for(
        lambda: Activity.objects.get(id=review_id).embedding_status == EmbeddingStatus.OK,
        "the single review's vector",
        workers.values(),
    )

    # The review did not wait for the batch: most of the batch is still being encoded.
    waiting = Activity.objects.filter(user=bulk_writer, embedding_status=EmbeddingStatus.PENDING).count()
    assert waiting == BATCH, f"only {waiting} of the batch still pending when the review was embedded"
    assert RECEIVED_SINGLE in workers["interactive"].read_text()
    assert RECEIVED_BATCH not in workers["interactive"].read_text()
    _wait_for(
        lambda: not Activity.objects.filter(user=bulk_writer, embedding_status=EmbeddingStatus.PENDING).exists(),
        "the batch's vectors",
        workers.values(),
    )
    # The vectors set off more work (interests, the item's community text, kept lists): the test
    # database is emptied after the test, and a worker still writing then deadlocked with it.
    _wait_for(lambda: _idle(workers.values()), "the workers to finish what the writes set off", workers.values())


def _idle(logs) -> bool:
    """Nothing queued, and every task the workers took has ended (succeeded, raised or retried)."""
    broker = redis.Redis.from_url(str(BROKER_URL))
    if broker.llen("interactive") or broker.llen("bulk"):
        return False
    text = "".join(log.read_text() for log in logs)
    return text.count("] received") == sum(text.count(end) for end in ("] succeeded in", "] raised", "] retry"))
