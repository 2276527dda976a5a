"""Activities: record one or a batch, list and delete one's own; the interest follows."""

import pytest

from recommendations.models import UserInterest
from tests.api.conftest import client_for, error_of
from tests.factories import ActivityFactory, ItemFactory
from users.models import Activity

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(person):
    return client_for(person)


def test_recording_a_review_embeds_it_and_says_the_interest_includes_it(
    client, person, django_capture_on_commit_callbacks
):
    item = ItemFactory()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/activities/create/",
            {"kind": "review", "item": item.id, "text": "  Kept my feet dry on a rainy hike.  "},
            format="json",
        )

    body = response.json()
    assert response.status_code == 201, body
    [activity] = body["activities"]
    assert activity["text"] == "Kept my feet dry on a rainy hike."
    assert activity["item"]["id"] == item.id
    assert body["interest"]["status"] in {"included", "queued"}
    # Tasks ran on commit (eager in tests): the text has its vector, the person an interest.
    assert Activity.objects.get(id=activity["id"]).embedding_status == "ok"
    assert UserInterest.objects.filter(user=person).exists()


def test_a_queued_answer_when_a_worker_will_do_it(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "memory://"
    from config.celery import app

    saved = app.conf.broker_url
    app.conf.broker_url = "memory://"
    try:
        response = client.post("/api/v1/activities/create/", {"kind": "search", "text": "a warm tent"}, format="json")
    finally:
        app.conf.broker_url = saved

    assert response.status_code == 201
    assert response.json()["interest"]["status"] == "queued"


def test_an_item_can_be_named_by_external_id(client):
    ItemFactory(external_id="sku-9")

    response = client.post(
        "/api/v1/activities/create/", {"kind": "purchase", "item_external_id": "sku-9"}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["activities"][0]["item"]["external_id"] == "sku-9"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "review", "text": "no item"}, "item"),
        ({"kind": "search"}, "text"),
        ({"kind": "rating", "item": 1}, "rating"),
        ({"kind": "rating", "item": 1, "rating": 9}, "rating"),
        ({"kind": "view", "item": 123456}, "item"),
        ({"kind": "view", "item_external_id": "nope"}, "item_external_id"),
        ({"kind": "view", "item": 1, "item_external_id": "x"}, "item_external_id"),
        ({"kind": "view", "item": 1, "created_at": "2999-01-01T00:00:00Z"}, "created_at"),
        ({"kind": "dance", "item": 1}, "kind"),
    ],
)
def test_invalid_activities_are_400_naming_the_field(client, body, field):
    ItemFactory(id=1)

    response = client.post("/api/v1/activities/create/", body, format="json")

    assert response.status_code == 400, response.json()
    assert field in error_of(response)["fields"]
    assert not Activity.objects.exists()


def test_a_batch_is_recorded_at_once(client, person):
    item = ItemFactory()
    batch = [{"kind": "view", "item": item.id}, {"kind": "chat", "text": "which lamp for reading?"}]

    response = client.post("/api/v1/activities/batch/", {"activities": batch}, format="json")

    assert response.status_code == 201
    assert [row["kind"] for row in response.json()["activities"]] == ["view", "chat"]
    assert Activity.objects.filter(user=person).count() == 2


def test_a_batch_with_one_unknown_item_writes_nothing_and_names_it(client):
    item = ItemFactory()
    batch = [{"kind": "view", "item": item.id}, {"kind": "view", "item": item.id + 1000}]

    response = client.post("/api/v1/activities/batch/", {"activities": batch}, format="json")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["activities.1.item"]
    assert not Activity.objects.exists()


def test_a_batch_is_limited_to_100(client):
    batch = [{"kind": "search", "text": "lamp"}] * 101

    response = client.post("/api/v1/activities/batch/", {"activities": batch}, format="json")

    assert response.status_code == 400
    assert "activities" in error_of(response)["fields"]


def test_the_list_shows_only_ones_own_activities_newest_first(client, person, other_person):
    old = ActivityFactory(user=person, created_at="2026-01-01T00:00:00Z")
    new = ActivityFactory(user=person, created_at="2026-02-01T00:00:00Z")
    ActivityFactory(user=other_person)

    response = client.get("/api/v1/activities/")

    assert [row["id"] for row in response.json()["results"]] == [new.id, old.id]


def test_the_list_filters_by_kind(client, person):
    ActivityFactory(user=person, kind="view")
    purchase = ActivityFactory(user=person, kind="purchase")

    response = client.get("/api/v1/activities/?kind=purchase")

    assert [row["id"] for row in response.json()["results"]] == [purchase.id]


def test_deleting_ones_activity_removes_it_and_rebuilds_the_interest(
    client, person, django_capture_on_commit_callbacks
):
    activity = ActivityFactory(user=person)

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.delete(f"/api/v1/activities/{activity.id}/delete/")

    assert response.status_code == 204
    assert not Activity.objects.filter(id=activity.id).exists()
    assert len(callbacks) == 1


def test_deleting_an_unknown_activity_is_404(client):
    response = client.delete("/api/v1/activities/99999999999999999999999/delete/")

    assert response.status_code == 404


# --- hidden (inactive) items are unknown to everyone but staff ---------------------------------


def _unknown_item_answer(client, body: dict) -> tuple[int, dict]:
    response = client.post("/api/v1/activities/create/", body, format="json")
    return response.status_code, response.json()


def test_an_activity_on_a_hidden_item_is_answered_like_an_unknown_id_and_leaks_nothing(client):
    hidden = ItemFactory(title="Secret prototype lamp", is_active=False)
    never_existed = hidden.id + 1000

    hidden_status, hidden_body = _unknown_item_answer(client, {"kind": "view", "item": hidden.id})
    unknown_status, unknown_body = _unknown_item_answer(client, {"kind": "view", "item": never_existed})

    assert hidden_status == unknown_status == 400
    assert hidden_body["error"]["fields"] == {"item": [f"no item with id {hidden.id}"]}
    assert unknown_body["error"]["fields"] == {"item": [f"no item with id {never_existed}"]}
    assert "Secret prototype lamp" not in str(hidden_body)
    assert not Activity.objects.exists()


def test_an_activity_on_a_hidden_item_named_by_external_id_is_unknown(client):
    ItemFactory(external_id="sku-hidden", is_active=False)

    status, body = _unknown_item_answer(client, {"kind": "purchase", "item_external_id": "sku-hidden"})

    assert status == 400
    assert body["error"]["fields"] == {"item_external_id": ["no item with external_id 'sku-hidden'"]}
    assert not Activity.objects.exists()


def test_a_batch_naming_a_hidden_item_writes_nothing_and_names_it_as_unknown(client):
    visible = ItemFactory()
    hidden = ItemFactory(is_active=False)
    batch = [{"kind": "view", "item": visible.id}, {"kind": "view", "item": hidden.id}]

    response = client.post("/api/v1/activities/batch/", {"activities": batch}, format="json")

    assert response.status_code == 400
    assert error_of(response)["fields"] == {"activities.1.item": [f"no item with id {hidden.id}"]}
    assert not Activity.objects.exists()


def test_staff_may_still_record_an_activity_on_a_hidden_item(staff):
    hidden = ItemFactory(is_active=False)

    response = client_for(staff).post("/api/v1/activities/create/", {"kind": "view", "item": hidden.id}, format="json")

    assert response.status_code == 201
    assert response.json()["activities"][0]["item"]["id"] == hidden.id
