"""Items: public reads, staff writes, bulk upsert; text changes queue the vector again."""

import pytest

from catalog.models import Item
from core.models import EmbeddingStatus
from tests.api.conftest import client_for, error_of
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db

NEW_ITEM = {
    "external_id": "lamp-1",
    "title": "  Reading lamp  ",
    "description": "A warm light for long evenings.",
    "category": "Home",
    "tags": ["light", "light", "reading"],
    "price": "34.50",
    "attributes": {"watts": 8},
}


def test_anyone_lists_active_items_with_pagination(db):
    for n in range(3):
        ItemFactory(title=f"Lamp {n}", category="Home")
    ItemFactory(title="Lamp hidden", is_active=False)

    response = client_for(None).get("/api/v1/items/?limit=2&category=Home")

    body = response.json()
    assert response.status_code == 200
    assert body["count"] == 3
    assert [item["title"] for item in body["results"]] == ["Lamp 0", "Lamp 1"]
    assert body["next"].endswith("offset=2")


def test_item_list_searches_titles(db):
    ItemFactory(title="Blue kettle")
    ItemFactory(title="Red teapot")

    response = client_for(None).get("/api/v1/items/?q=kettle")

    assert [item["title"] for item in response.json()["results"]] == ["Blue kettle"]


def test_item_list_query_count_does_not_grow_with_the_page(db, django_assert_max_num_queries):
    for _ in range(30):
        ItemFactory()
    client = client_for(None)

    with django_assert_max_num_queries(2):
        response = client.get("/api/v1/items/?limit=30")

    assert len(response.json()["results"]) == 30


def test_staff_create_an_item_cleaned_like_an_import_and_queued_for_its_vector(
    staff, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(staff).post("/api/v1/items/create/", NEW_ITEM, format="json")

    body = response.json()
    assert response.status_code == 201, body
    assert body["title"] == "Reading lamp"
    assert body["tags"] == ["light", "reading"]
    assert body["price"] == "34.50"
    assert body["embedding_status"] == EmbeddingStatus.PENDING
    assert len(callbacks) == 1  # embed_item, after the commit


def test_creating_an_existing_external_id_is_400_on_that_field(staff):
    ItemFactory(external_id="lamp-1")

    response = client_for(staff).post("/api/v1/items/create/", NEW_ITEM, format="json")

    assert response.status_code == 400
    assert "external_id" in error_of(response)["fields"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price", "-1"),
        ("price", "1e30"),
        ("title", ""),
        ("tags", ["x" * 101]),
        ("attributes", ["not", "an", "object"]),
        ("attributes", {"nul": "a\x00b"}),
    ],
)
def test_invalid_item_fields_are_400_naming_the_field(staff, field, value):
    response = client_for(staff).post("/api/v1/items/create/", {**NEW_ITEM, field: value}, format="json")

    assert response.status_code == 400
    assert any(path.startswith(field) for path in error_of(response)["fields"])
    assert not Item.objects.exists()


def test_staff_update_re_queues_the_vector_only_when_the_text_changes(staff, django_capture_on_commit_callbacks):
    item = ItemFactory()
    item.refresh_text_hash()
    Item.objects.filter(id=item.id).update(text_hash=item.text_hash, embedding_status=EmbeddingStatus.OK)
    client = client_for(staff)

    with django_capture_on_commit_callbacks() as price_only:
        client.patch(f"/api/v1/items/{item.id}/update/", {"price": "12.00"}, format="json")
    with django_capture_on_commit_callbacks() as retitled:
        response = client.patch(f"/api/v1/items/{item.id}/update/", {"title": "Renamed shoe"}, format="json")

    assert response.status_code == 200
    assert response.json()["title"] == "Renamed shoe"
    assert response.json()["embedding_status"] == EmbeddingStatus.PENDING
    assert (len(price_only), len(retitled)) == (0, 1)


def test_staff_update_can_reactivate_and_pin(staff):
    item = ItemFactory(is_active=False)

    response = client_for(staff).patch(
        f"/api/v1/items/{item.id}/update/", {"is_active": True, "placement": "pinned"}, format="json"
    )

    assert response.status_code == 200
    item.refresh_from_db()
    assert (item.is_active, item.placement) == (True, "pinned")


def test_staff_deactivate_hides_the_item_from_the_public(staff):
    item = ItemFactory()

    response = client_for(staff).post(f"/api/v1/items/{item.id}/deactivate/")

    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert client_for(None).get(f"/api/v1/items/{item.id}/").status_code == 404


def test_bulk_upsert_creates_updates_and_skips(staff):
    ItemFactory(external_id="a", title="Old title")
    ItemFactory(external_id="b", title="Same", description="", category="", tags=[])
    rows = [
        {"external_id": "a", "title": "New title"},
        {"external_id": "b", "title": "Same"},
        {"external_id": "c", "title": "Brand new", "tags": ["x"], "price": 3},
    ]

    response = client_for(staff).post("/api/v1/items/bulk-upsert/", {"items": rows}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json() == {"created": 1, "updated": 1, "skipped": 1}
    assert Item.objects.get(external_id="a").title == "New title"


def test_bulk_upsert_is_all_or_nothing_and_names_the_bad_rows(staff):
    rows = [
        {"external_id": "ok", "title": "Fine"},
        {"external_id": "bad", "title": "Bad", "price": "free"},
        {"external_id": "ok", "title": "Twice"},
        "not an object",
    ]

    response = client_for(staff).post("/api/v1/items/bulk-upsert/", {"items": rows}, format="json")

    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {"items.3"}  # the type check runs first
    del rows[3]
    response = client_for(staff).post("/api/v1/items/bulk-upsert/", {"items": rows}, format="json")
    assert set(error_of(response)["fields"]) == {"items.1", "items.2"}
    assert not Item.objects.exists()


def test_bulk_upsert_refuses_more_than_the_limit(staff):
    rows = [{"external_id": f"i{n}", "title": "t"} for n in range(1_001)]

    response = client_for(staff).post("/api/v1/items/bulk-upsert/", {"items": rows}, format="json")

    assert response.status_code == 400
    assert "1000" in error_of(response)["fields"]["items"][0]


def test_an_infinite_number_in_attributes_is_refused_before_the_database(staff):
    raw = '{"external_id": "x", "title": "t", "attributes": {"size": 1e400}}'

    response = client_for(staff).post("/api/v1/items/create/", raw, content_type="application/json")

    assert response.status_code == 400
    assert not Item.objects.exists()
