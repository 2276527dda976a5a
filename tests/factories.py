from datetime import UTC, datetime

import factory
import numpy as np

from catalog.models import Item
from users.models import Activity, ActivityKind, User


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"person{n}")
    display_name = factory.Faker("first_name")
    password = factory.django.Password("correct horse battery")


class StaffUserFactory(UserFactory):
    is_staff = True
    is_superuser = True


class ItemFactory(factory.django.DjangoModelFactory[Item]):
    class Meta:
        model = Item

    external_id = factory.Sequence(lambda n: f"item-{n}")
    title = factory.Sequence(lambda n: f"Trail running shoe model {n}")
    description = "A light shoe with a grippy sole for muddy trails."
    category = "Sports"
    tags = factory.LazyFunction(lambda: ["running", "outdoor"])


class ActivityFactory(factory.django.DjangoModelFactory[Activity]):
    class Meta:
        model = Activity

    user = factory.SubFactory(UserFactory)
    item = factory.SubFactory(ItemFactory)
    kind = ActivityKind.VIEW
    created_at = factory.LazyFunction(lambda: datetime(2026, 10, 1, tzinfo=UTC))


def vector_of(row, model_name: str = "all-MiniLM-L6-v2"):
    """The stored vector of an item or activity for one model, or None."""
    found = row.vectors.filter(model_name=model_name).values_list("embedding", flat=True).first()
    return None if found is None else np.asarray(found)
