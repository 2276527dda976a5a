"""Idempotent writes: a retry with the same Idempotency-Key gets the first answer and writes nothing."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections, transaction
from django.utils import timezone

from catalog.models import Item
from core import tasks as core_tasks
from core.models import IdempotencyRecord
from recommendations.models import Feedback, Recommendation, RecommendationContext, RecommendedItem
from recommendations.vectors import embedding
from tests.api.conftest import client_for, error_of
from tests.factories import ItemFactory, UserFactory
from users import apis as users_apis
from users.models import Activity

pytestmark = pytest.mark.django_db

KEY = "Idempotency-Key"


def new_key() -> str:
    return str(uuid.uuid4())


def post(client, path, body, key=None, **headers):
    if key is not None:
        headers[KEY] = key
    return client.post(path, body, format="json", headers=headers)


def assert_replay_of(first, replay):
    assert replay.status_code == first.status_code
    assert replay.content == first.content  # byte for byte, not only equal JSON
    assert replay["Content-Type"] == first["Content-Type"]
    assert replay["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")


# --- replays -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body_of"),
    [
        ("/api/v1/activities/create/", lambda item: {"kind": "view", "item": item.id}),
        ("/api/v1/activities/create/", lambda item: {"kind": "purchase", "item_external_id": item.external_id}),
        (
            "/api/v1/activities/batch/",
            lambda item: {"activities": [{"kind": "view", "item": item.id}, {"kind": "search", "text": "a warm tent"}]},
        ),
    ],
    ids=["single-by-id", "single-by-external-id", "batch"],
)
def test_a_replayed_activity_write_returns_the_first_answer_and_writes_nothing(person, path, body_of):
    client, body, key = client_for(person), body_of(ItemFactory()), new_key()

    first = post(client, path, body, key)
    count = Activity.objects.count()
    replay = post(client, path, body, key)

    assert first.status_code == 201, first.content
    assert_replay_of(first, replay)
    assert Activity.objects.count() == count == len(body.get("activities", [body]))
    # Without a key the same request is a new event, as before.
    assert post(client, path, body).status_code == 201
    assert Activity.objects.count() == 2 * count


def test_a_replayed_feedback_returns_the_first_counts_not_already_recorded(person):
    items = ItemFactory.create_batch(2)
    shown = Recommendation.objects.create(user=person, context=RecommendationContext.USER)
    for position, item in enumerate(items):
        RecommendedItem.objects.create(recommendation=shown, item=item, position=position, score=1.0)
    body = {"recommendation_id": str(shown.id), "kind": "click", "item_ids": [item.id for item in items]}
    client, key = client_for(person), new_key()

    first = post(client, "/api/v1/recommendations/feedback/", body, key)
    replay = post(client, "/api/v1/recommendations/feedback/", body, key)

    assert first.status_code == 201 and first.json() == {"recorded": 2, "already_recorded": 0}
    assert_replay_of(first, replay)  # a retry without the key would say already_recorded: 2
    assert Feedback.objects.count() == 2


def test_a_replayed_item_create_returns_the_created_item_instead_of_a_conflict(staff):
    client, key = client_for(staff), new_key()
    body = {"external_id": "sku-1", "title": "Rain jacket", "price": "80.00"}

    first = post(client, "/api/v1/items/create/", body, key)
    replay = post(client, "/api/v1/items/create/", body, key)

    assert first.status_code == 201, first.content
    assert_replay_of(first, replay)
    assert Item.objects.filter(external_id="sku-1").count() == 1
    # The same request without the key finds the item exists.
    assert post(client, "/api/v1/items/create/", body).status_code == 400


def test_a_replayed_bulk_upsert_returns_the_first_counts(staff):
    client, key = client_for(staff), new_key()
    body = {"items": [{"external_id": "a", "title": "Tent"}, {"external_id": "b", "title": "Stove"}]}

    first = post(client, "/api/v1/items/bulk-upsert/", body, key)
    replay = post(client, "/api/v1/items/bulk-upsert/", body, key)

    assert first.json() == {"created": 2, "updated": 0, "skipped": 0}
    assert_replay_of(first, replay)
    assert Item.objects.count() == 2


def test_the_quoted_form_of_a_key_is_the_same_key(person):
    client, item, key = client_for(person), ItemFactory(), new_key()

    first = post(client, "/api/v1/activities/create/", {"kind": "view", "item": item.id}, key)
    replay = post(client, "/api/v1/activities/create/", {"kind": "view", "item": item.id}, f'"{key}"')

    assert_replay_of(first, replay)
    assert Activity.objects.count() == 1


def test_the_same_body_serialised_differently_is_the_same_request(person):
    client, item, key = client_for(person), ItemFactory(), new_key()
    json = {"content_type": "application/json", "headers": {KEY: key}}

    first = client.post("/api/v1/activities/create/", f'{{"kind": "view", "item": {item.id}}}', **json)
    replay = client.post("/api/v1/activities/create/", f'{{ "item":{item.id},"kind":"view" }}', **json)

    assert_replay_of(first, replay)


def test_a_replay_after_the_work_it_queued_still_reports_the_first_answer(person, settings):
    # A worker will do it (not eager): the first answer says queued, the text pending.
    settings.CELERY_TASK_ALWAYS_EAGER = False
    client, key, body = client_for(person), new_key(), {"kind": "search", "text": "a tent for windy campsites"}
    from config.celery import app

    saved, app.conf.broker_url = app.conf.broker_url, "memory://"
    try:
        first = post(client, "/api/v1/activities/create/", body, key)
    finally:
        app.conf.broker_url = saved
    embedding.embeddings_process_pending()  # what the worker does: the text gets its vector
    replay = post(client, "/api/v1/activities/create/", body, key)

    assert first.json()["interest"]["status"] == "queued"
    assert first.json()["activities"][0]["embedding_status"] == "pending"
    assert_replay_of(first, replay)
    assert client.get("/api/v1/activities/").json()["results"][0]["embedding_status"] == "ok"
    assert Activity.objects.count() == 1


# --- what a key is bound to ----------------------------------------------------------------------


def test_the_same_key_with_another_body_is_422_and_writes_nothing(person):
    client, key = client_for(person), new_key()
    first_item, other_item = ItemFactory.create_batch(2)
    post(client, "/api/v1/activities/create/", {"kind": "view", "item": first_item.id}, key)

    response = post(client, "/api/v1/activities/create/", {"kind": "view", "item": other_item.id}, key)

    error = error_of(response)
    assert response.status_code == 422
    assert error["code"] == "idempotency_key_reused"
    assert KEY in error["fields"] and KEY in error["message"]
    assert list(Activity.objects.values_list("item_id", flat=True)) == [first_item.id]


def test_another_person_with_the_same_key_is_a_request_of_their_own(person, other_person):
    item, key = ItemFactory(), new_key()
    body = {"kind": "view", "item": item.id}

    mine = post(client_for(person), "/api/v1/activities/create/", body, key)
    theirs = post(client_for(other_person), "/api/v1/activities/create/", body, key)

    assert mine.status_code == theirs.status_code == 201
    assert not theirs.has_header("Idempotent-Replayed")
    assert theirs.json()["activities"][0]["id"] != mine.json()["activities"][0]["id"]
    assert Activity.objects.filter(user=person).count() == Activity.objects.filter(user=other_person).count() == 1


def test_the_same_key_on_another_endpoint_is_another_request(person):
    client, item, key = client_for(person), ItemFactory(), new_key()

    single = post(client, "/api/v1/activities/create/", {"kind": "view", "item": item.id}, key)
    batch = post(client, "/api/v1/activities/batch/", {"activities": [{"kind": "view", "item": item.id}]}, key)

    assert single.status_code == batch.status_code == 201
    assert not batch.has_header("Idempotent-Replayed")
    assert Activity.objects.count() == 2


# --- validation, and what is not kept ------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_key",
    ["", "x" * 256, "two words", "a,b", 'say"cheese', "back\\slash", "caf\u00e9", '"unterminated', '""'],
    ids=["empty", "too-long", "space", "comma", "quote", "backslash", "non-ascii", "one-quote", "empty-quoted"],
)
def test_a_malformed_key_is_400_naming_the_header_and_writes_nothing(person, bad_key):
    response = post(client_for(person), "/api/v1/activities/create/", {"kind": "search", "text": "tent"}, bad_key)

    error = error_of(response)
    assert response.status_code == 400
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [KEY]
    assert error["message"].startswith(f"{KEY}: must be 1 to 255 visible ASCII characters")
    assert not Activity.objects.exists()


def test_the_longest_key_is_accepted(person):
    key = "k" * 255
    body = {"kind": "search", "text": "tent"}

    first = post(client_for(person), "/api/v1/activities/create/", body, key)
    replay = post(client_for(person), "/api/v1/activities/create/", body, key)

    assert first.status_code == 201
    assert_replay_of(first, replay)


def test_an_anonymous_caller_cannot_use_a_key():
    anchor, shown = ItemFactory.create_batch(2)
    anonymous_answer = Recommendation.objects.create(context=RecommendationContext.SIMILAR, anchor_item=anchor)
    RecommendedItem.objects.create(recommendation=anonymous_answer, item=shown, position=0, score=1.0)
    body = {"recommendation_id": str(anonymous_answer.id), "kind": "impression", "item_ids": [shown.id]}

    response = post(client_for(None), "/api/v1/recommendations/feedback/", body, new_key())

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == [KEY]
    assert post(client_for(None), "/api/v1/recommendations/feedback/", body).status_code == 201


def test_a_refused_request_is_not_kept_so_the_fixed_one_may_reuse_its_key(person):
    client, item, key = client_for(person), ItemFactory(), new_key()

    refused = post(client, "/api/v1/activities/create/", {"kind": "view", "item": item.id + 1000}, key)
    fixed = post(client, "/api/v1/activities/create/", {"kind": "view", "item": item.id}, key)

    assert refused.status_code == 400
    assert fixed.status_code == 201 and not fixed.has_header("Idempotent-Replayed")
    assert Activity.objects.count() == IdempotencyRecord.objects.count() == 1


def test_a_request_that_fails_after_its_write_rolls_the_write_back_and_releases_the_key(person, monkeypatch):
    client, item, key = client_for(person), ItemFactory(), new_key()
    body = {"kind": "view", "item": item.id}
    real_record = users_apis.activity_record

    def record_then_fail(**kwargs):
        real_record(**kwargs)
        raise RuntimeError("the web process fails after the row is written")

    monkeypatch.setattr(users_apis, "activity_record", record_then_fail)
    failed = post(client, "/api/v1/activities/create/", body, key)
    monkeypatch.setattr(users_apis, "activity_record", real_record)
    retried = post(client, "/api/v1/activities/create/", body, key)

    assert failed.status_code == 500
    assert retried.status_code == 201 and not retried.has_header("Idempotent-Replayed")
    assert Activity.objects.count() == IdempotencyRecord.objects.count() == 1


def test_a_failure_while_keeping_the_answer_leaves_no_write_without_its_key(person, monkeypatch):
    client, item, key = client_for(person), ItemFactory(), new_key()

    def fail(**kwargs):
        raise RuntimeError("the database goes away between the write and its key")

    monkeypatch.setattr(IdempotencyRecord.objects, "create", fail)
    failed = post(client, "/api/v1/activities/create/", {"kind": "view", "item": item.id}, key)

    assert failed.status_code == 500
    assert not Activity.objects.exists()
    assert not IdempotencyRecord.objects.exists()


# --- retention -----------------------------------------------------------------------------------


def _age_records(by: timedelta) -> None:
    IdempotencyRecord.objects.update(created_at=timezone.now() - by)


def test_the_periodic_task_removes_keys_past_their_retention_and_keeps_the_others(person, other_person):
    item = ItemFactory()
    post(client_for(person), "/api/v1/activities/create/", {"kind": "view", "item": item.id}, new_key())
    _age_records(timedelta(hours=25))
    post(client_for(other_person), "/api/v1/activities/create/", {"kind": "view", "item": item.id}, new_key())

    removed = core_tasks.idempotency_records_expire.delay().get()

    assert removed == 1
    assert list(IdempotencyRecord.objects.values_list("user", flat=True)) == [other_person.id]


def test_the_task_runs_hourly_on_the_bulk_queue():
    [entry] = [
        entry
        for entry in django_settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"] == "core.tasks.idempotency_records_expire"
    ]

    assert entry["schedule"] == 3600
    assert django_settings.CELERY_TASK_ROUTES[entry["task"]] == {"queue": "bulk"}


def test_a_key_past_its_retention_is_new_again_even_before_the_task_ran(person, settings):
    settings.IDEMPOTENCY_KEY_RETENTION = timedelta(hours=2)
    client, item, key = client_for(person), ItemFactory(), new_key()
    post(client, "/api/v1/activities/create/", {"kind": "view", "item": item.id}, key)
    _age_records(timedelta(hours=3))

    again = post(client, "/api/v1/activities/create/", {"kind": "view", "item": item.id}, key)

    assert again.status_code == 201 and not again.has_header("Idempotent-Replayed")
    assert Activity.objects.count() == 2 and IdempotencyRecord.objects.count() == 1


def test_keys_go_with_the_account(person):
    post(client_for(person), "/api/v1/activities/create/", {"kind": "search", "text": "tent"}, new_key())
    assert IdempotencyRecord.objects.filter(user=person).exists()

    person.delete()

    assert not IdempotencyRecord.objects.exists()


# --- concurrent duplicates (real connections, committed data) ----------------------------------


def _post_in_thread(results, index, user, path, body, key, start=None):
    try:
        if start is not None:
            start.wait()
        results[index] = post(client_for(user), path, body, key)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_sent_while_the_first_still_runs_is_409_and_one_row_is_written():
    person, item, key = UserFactory(), ItemFactory(), new_key()
    body = {"kind": "view", "item": item.id}
    results: dict[int, object] = {}
    # The first request is held mid-write: this connection locks the activities table against inserts.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE users_activity IN SHARE ROW EXCLUSIVE MODE")
        first = threading.Thread(
            target=_post_in_thread, args=(results, 0, person, "/api/v1/activities/create/", body, key)
        )
        first.start()
        for _ in range(200):
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'users_activity'::regclass")
            if cursor.fetchone()[0]:
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail("the first request never reached its write")
        _post_in_thread(results, 1, person, "/api/v1/activities/create/", body, key)
    first.join(timeout=30)
    replay = post(client_for(person), "/api/v1/activities/create/", body, key)

    assert results[0].status_code == 201, results[0].content
    assert results[1].status_code == 409
    assert results[1]["Retry-After"] == "1"
    assert error_of(results[1])["code"] == "idempotency_key_in_use"
    assert_replay_of(results[0], replay)
    assert Activity.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_duplicates_sent_at_once_write_one_row():
    person, item, key = UserFactory(), ItemFactory(), new_key()
    body = {"kind": "view", "item": item.id}
    senders = 6
    results: dict[int, object] = {}
    start = threading.Barrier(senders)
    threads = [
        threading.Thread(
            target=_post_in_thread, args=(results, n, person, "/api/v1/activities/create/", body, key, start)
        )
        for n in range(senders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    statuses = sorted(response.status_code for response in results.values())
    written = [r for r in results.values() if r.status_code == 201 and not r.has_header("Idempotent-Replayed")]
    assert len(results) == senders
    assert set(statuses) <= {201, 409}, statuses
    assert len(written) == 1
    assert Activity.objects.count() == 1


def test_a_replayed_deactivation_returns_the_first_answer(staff):
    client, item, key = client_for(staff), ItemFactory(), new_key()

    first = post(client, f"/api/v1/items/{item.id}/deactivate/", None, key)
    Item.objects.filter(id=item.id).update(is_active=True)  # staff brought it back meanwhile
    replay = post(client, f"/api/v1/items/{item.id}/deactivate/", None, key)

    assert first.status_code == 200 and first.json()["is_active"] is False
    assert_replay_of(first, replay)
    assert Item.objects.get(id=item.id).is_active  # the replay changed nothing


def test_a_replay_reads_the_kept_answer_and_runs_nothing_else(person, django_assert_num_queries):
    client, item, key = client_for(person), ItemFactory(), new_key()
    post(client, "/api/v1/activities/create/", {"kind": "view", "item": item.id}, key)

    # The token and its person, the key's lock, the kept answer, and the savepoint around them (the
    # transaction in production): no item, activity or interest query.
    with django_assert_num_queries(5):
        replay = post(client, "/api/v1/activities/create/", {"kind": "view", "item": item.id}, key)

    assert replay["Idempotent-Replayed"] == "true"
