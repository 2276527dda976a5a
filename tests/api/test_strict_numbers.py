"""Numbers from outside are read strictly: a malformed or out-of-range one is a 400 naming it, never a guess."""

import pytest

from tests.api.conftest import client_for, error_of
from tests.factories import ItemFactory
from users.models import Activity

pytestmark = pytest.mark.django_db

MALFORMED_PAGES = [
    ("limit=-1", "limit"),
    ("limit=0", "limit"),
    ("limit=101", "limit"),
    ("limit=%C2%B2", "limit"),
    ("limit=%EF%BC%95", "limit"),  # full-width 5
    ("limit=2.0", "limit"),
    ("offset=abc", "offset"),
    ("offset=-1", "offset"),
    ("offset=%00", "offset"),
]


@pytest.mark.parametrize(("query", "parameter"), MALFORMED_PAGES)
def test_item_list_refuses_a_malformed_page_naming_the_parameter(db, query, parameter):
    response = client_for(None).get(f"/api/v1/items/?{query}")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == [parameter]


@pytest.mark.parametrize(("query", "parameter"), MALFORMED_PAGES)
def test_activity_list_refuses_a_malformed_page_naming_the_parameter(person, query, parameter):
    response = client_for(person).get(f"/api/v1/activities/?{query}")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == [parameter]


def test_lists_still_page_with_well_formed_parameters(db):
    for n in range(3):
        ItemFactory(title=f"Lamp {n}")

    body = client_for(None).get("/api/v1/items/?limit=100&offset=1").json()

    assert [item["title"] for item in body["results"]] == ["Lamp 1", "Lamp 2"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "rating", "item": 1, "rating": True}, "rating"),
        ({"kind": "rating", "item": 1, "rating": "４"}, "rating"),  # full-width 4
        ({"kind": "rating", "item": 1, "rating": "NaN"}, "rating"),
        ({"kind": "rating", "item": 1, "rating": "4_0"}, "rating"),
        ({"kind": "view", "item": True}, "item"),
        ({"kind": "view", "item": "１"}, "item"),
        ({"kind": "view", "item": "1.0"}, "item"),
    ],
)
def test_an_activity_with_a_boolean_or_non_ascii_number_is_refused(person, body, field):
    ItemFactory(id=1)

    response = client_for(person).post("/api/v1/activities/create/", body, format="json")

    assert response.status_code == 400, response.json()
    assert field in error_of(response)["fields"]
    assert not Activity.objects.exists()


@pytest.mark.parametrize("rating", [4, 4.5, "4.5", "3"])
def test_a_rating_as_a_number_or_plain_decimal_text_is_recorded(person, rating):
    ItemFactory(id=1)

    response = client_for(person).post(
        "/api/v1/activities/create/", {"kind": "rating", "item": 1, "rating": rating}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert Activity.objects.get().rating == float(rating)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("k=%EF%BC%91%EF%BC%92", "k"),  # full-width 12
        ("k=%C2%B2", "k"),
        ("k=2.0", "k"),
        ("offset=%EF%BC%91", "offset"),
        ("price_min=1_000", "price_min"),
        ("price_min=1e3", "price_min"),
        ("price_max=%EF%BC%91%EF%BC%90", "price_max"),
        ("price_max=%00", "price_max"),
        ("user=%EF%BC%91", "user"),
    ],
)
def test_recommendation_filters_accept_only_ascii_digits_and_plain_decimals(person, query, parameter):
    response = client_for(person).get(f"/api/v1/recommendations/?{query}")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == [parameter]


@pytest.mark.parametrize(("field", "value"), [("k", True), ("offset", False), ("price_min", True)])
def test_free_text_refuses_booleans_as_numbers(db, field, value):
    response = client_for(None).post("/api/v1/recommendations/text/", {"text": "tea", field: value}, format="json")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == [field]


def test_feedback_refuses_a_boolean_item_id(db):
    body = {"recommendation_id": "6f1c9b8e-3a52-4d0e-9d6c-2f4a7e1b0c11", "kind": "click", "item_ids": [True]}

    response = client_for(None).post("/api/v1/recommendations/feedback/", body, format="json")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["item_ids.0"]


@pytest.mark.parametrize("price", ["1_000", "1e3", "１０", True])
def test_an_item_price_is_a_plain_decimal(staff, price):
    body = {"external_id": "lamp-1", "title": "Reading lamp", "price": price}

    response = client_for(staff).post("/api/v1/items/create/", body, format="json")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["price"]
