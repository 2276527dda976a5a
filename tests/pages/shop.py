"""A small shop with vectors and a behaviour model (real encoder, real pgvector), for page and browser tests."""

from datetime import timedelta

from django.utils import timezone

from catalog.models import Item
from recommendations.retrieval.behaviour_build import behaviour_model_rebuild
from recommendations.vectors import embedding
from tests.factories import UserFactory
from users.models import Activity

SHOP = {
    "boots": ("Alpine hiking boots", "Outdoor", "Waterproof leather boots for mountain trails."),
    "tent": ("Two-person backpacking tent", "Outdoor", "A light tent for camping trips in the hills."),
    "stove": ("Camping gas stove", "Outdoor", "Boils water at the campsite in three minutes."),
    "kettle": ("Gooseneck tea kettle", "Kitchen", "Pours slowly for green tea and pour-over coffee."),
    "teapot": ("Cast iron teapot", "Kitchen", "Keeps loose-leaf tea hot for an hour."),
    "parcel": (
        "Where is my parcel?",
        "Help",
        "Track a delivery that has not arrived and ask for a refund if it is lost.",
    ),
}
PURCHASES = {
    "hiker1": ["boots", "tent", "stove"],
    "hiker2": ["boots", "tent"],
    "tea1": ["kettle", "teapot"],
    "tea2": ["kettle", "teapot"],
}


def build_shop() -> dict:
    items = {
        key: Item.objects.create(external_id=key, title=title, category=category, description=description)
        for key, (title, category, description) in SHOP.items()
    }
    people = {name: UserFactory.create(username=name) for name in PURCHASES}
    when = timezone.now() - timedelta(days=3)
    for name, bought in PURCHASES.items():
        for offset, key in enumerate(bought):
            Activity.objects.create(
                user=people[name], item=items[key], kind="purchase", created_at=when + timedelta(hours=offset)
            )
    type(people["hiker1"]).objects.update(interest_stale=True)
    embedding.embeddings_process_pending()
    behaviour_model_rebuild()
    return {"items": items, "people": people}
