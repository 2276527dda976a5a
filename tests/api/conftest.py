from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Item
from recommendations.retrieval.behaviour_build import behaviour_model_rebuild
from recommendations.vectors import embedding
from tests.factories import StaffUserFactory, UserFactory
from users.models import Activity

CATALOG = {
    "boots": ("Alpine hiking boots", "Outdoor", ["hiking"], "129.00", "Waterproof leather boots for mountain trails."),
    "tent": ("Two-person backpacking tent", "Outdoor", ["camping"], "219.00", "A light tent for camping in the hills."),
    "stove": ("Camping gas stove", "Outdoor", ["camping"], "39.00", "Boils water at the campsite in three minutes."),
    "kettle": ("Gooseneck tea kettle", "Kitchen", ["tea"], "45.00", "Pours slowly for green tea and coffee."),
    "teapot": ("Cast iron teapot", "Kitchen", ["tea"], "60.00", "Keeps loose-leaf tea hot for an hour."),
    "retired": ("Old hiking boots", "Outdoor", ["hiking"], "20.00", "Discontinued model of mountain boots."),
}
PURCHASES = {"hiker1": ["boots", "tent", "stove"], "hiker2": ["boots", "tent"], "tea1": ["kettle", "teapot"]}


def client_for(user=None) -> APIClient:
    """A client authenticated the way integrators are: with an API token."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def anonymous():
    return client_for(None)


@pytest.fixture
def person(db):
    return UserFactory(username="person")


@pytest.fixture
def other_person(db):
    return UserFactory(username="other")


@pytest.fixture
def staff(db):
    return StaffUserFactory(username="staff")


@pytest.fixture
def world(db):
    """Six items with vectors (real encoder), three people who bought things, a behaviour model."""
    items = {
        key: Item.objects.create(
            external_id=key, title=title, category=category, tags=tags, price=price, description=description
        )
        for key, (title, category, tags, price, description) in CATALOG.items()
    }
    people = {name: UserFactory.create(username=name) for name in PURCHASES}
    when = timezone.now() - timedelta(days=30)
    for name, bought in PURCHASES.items():
        for offset, key in enumerate(bought):
            Activity.objects.create(
                user=people[name], item=items[key], kind="purchase", created_at=when + timedelta(hours=offset)
            )
    Item.objects.filter(external_id="retired").update(is_active=False)
    type(people["hiker1"]).objects.update(interest_stale=True)
    embedding.embeddings_process_pending()
    behaviour_model_rebuild()
    return {"items": items, "people": people}


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]
