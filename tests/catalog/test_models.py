from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from catalog.models import Item
from recommendations.models import RankerModel
from tests.factories import ActivityFactory, ItemFactory
from users.models import Activity

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 10, 1, tzinfo=UTC)


def _refused(create) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        create()


def test_item_external_id_is_unique():
    ItemFactory(external_id="sku-1")

    _refused(lambda: Item.objects.create(external_id="sku-1", title="Another"))


def test_item_refuses_empty_ids_titles_and_negative_prices():
    _refused(lambda: Item.objects.create(external_id="", title="No id"))
    _refused(lambda: Item.objects.create(external_id="a", title=""))
    _refused(lambda: Item.objects.create(external_id="b", title="Cheap", price=Decimal("-0.01")))


def test_item_text_change_marks_the_vector_pending():
    item = ItemFactory(title="Kettle")
    item.refresh_text_hash()
    item.embedding_status = "ok"

    assert item.refresh_text_hash() is False
    item.description = "Boils a litre in two minutes."
    assert item.refresh_text_hash() is True
    assert item.embedding_status == "pending"


def test_item_embedding_text_puts_title_first_and_keeps_every_part():
    item = Item(title="Kettle", category="Kitchen", tags=["tea", "steel"], description="Boils fast.")

    assert item.embedding_text() == "Kettle. Category: Kitchen. Tags: tea, steel. Boils fast."


def test_activity_constraints_hold_in_the_database(user):
    item = ItemFactory()
    base = {"user": user, "created_at": WHEN}

    _refused(lambda: Activity.objects.create(**base, item=item, kind="teleport"))
    _refused(lambda: Activity.objects.create(**base, item=item, kind="rating", rating=7))
    _refused(lambda: Activity.objects.create(**base, item=item, kind="rating", rating=None))
    _refused(lambda: Activity.objects.create(**base, kind="view"))
    _refused(lambda: Activity.objects.create(**base, kind="search", text=""))
    Activity.objects.create(**base, kind="search", text="waterproof boots")
    Activity.objects.create(**base, item=item, kind="rating", rating=4.5)

    assert Activity.objects.count() == 2


def test_imported_events_are_unique_by_source_key():
    ActivityFactory(source_key="k1")

    _refused(lambda: ActivityFactory(source_key="k1"))


def test_only_one_ranker_is_active():
    RankerModel.objects.create(version=1, algorithm="blend", artifact=b"", is_active=True)

    _refused(lambda: RankerModel.objects.create(version=2, algorithm="blend", artifact=b"", is_active=True))
    RankerModel.objects.create(version=3, algorithm="blend", artifact=b"", is_active=False)


def test_ranker_training_window_must_be_ordered():
    _refused(
        lambda: RankerModel.objects.create(
            version=1,
            algorithm="blend",
            artifact=b"",
            trained_from=WHEN,
            trained_until=datetime(2020, 1, 1, tzinfo=UTC),
        )
    )
