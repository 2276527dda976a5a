"""Vectors in the database, made by the real encoder (tasks run in-process here; see test_worker.py)."""

import numpy as np
import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from catalog.models import Item
from catalog.services import item_queue_reembedding, item_save
from core.exceptions import ApplicationError
from recommendations.ml import encoder as encoder_module
from recommendations.ml.encoder import get_encoder
from recommendations.models import UserInterest
from recommendations.tasks import embed_item, sweep_pending_embeddings
from recommendations.vectors import embedding
from tests.factories import ItemFactory, UserFactory, vector_of
from users.models import Activity
from users.services import activity_record

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _default_encoder(settings):
    yield
    encoder_module.reset_encoder()


class CountingEncoder:
    """The real encoder, counting the texts it was asked to encode."""

    def __init__(self, real):
        self.real, self.name, self.dimensions, self.texts, self.kinds = real, real.name, real.dimensions, [], []

    def encode(self, texts, **kwargs):
        self.texts += texts
        self.kinds += [kwargs["kind"]] * len(texts)
        return self.real.encode(texts, **kwargs)


@pytest.fixture
def counting(monkeypatch):
    counter = CountingEncoder(get_encoder())
    monkeypatch.setattr(embedding, "get_encoder", lambda: counter)
    return counter


def test_item_save_embeds_the_item_text_with_the_model_name():
    item = item_save(item=Item(external_id="boot", title="Alpine boot", description="Waterproof leather boot."))

    item.refresh_from_db()
    assert item.embedding_status == "ok" and item.embedding_model == "all-MiniLM-L6-v2" and item.embedded_at
    expected = get_encoder().encode([item.embedding_text()], kind="passage").vectors[0]
    assert float(np.dot(vector_of(item), expected)) > 0.999


def test_same_text_twice_is_encoded_once(counting):
    item = ItemFactory()
    embedding.item_embeddings_refresh(item_ids=[item.id])
    embedded_at = Item.objects.get(id=item.id).embedded_at

    assert embedding.item_embeddings_refresh(item_ids=[item.id]) == 0
    assert len(counting.texts) == 1
    assert Item.objects.get(id=item.id).embedded_at == embedded_at


def test_items_are_encoded_as_passages_and_a_persons_words_as_queries(counting):
    item = ItemFactory()
    embedding.item_embeddings_refresh(item_ids=[item.id])
    activity = activity_record(user=UserFactory(), kind="search", text="tea for a cold evening")
    embedding.activity_embeddings_refresh(activity_ids=[activity.id])

    assert list(zip(counting.texts, counting.kinds, strict=True)) == [
        (item.embedding_text(), "passage"),
        ("tea for a cold evening", "query"),
    ]


def test_a_vector_is_not_written_over_text_that_changed_while_encoding(monkeypatch):
    item = ItemFactory()
    real = get_encoder()

    class EditsMeanwhile(CountingEncoder):
        def encode(self, texts, **kwargs):
            Item.objects.filter(id=item.id).update(title="Renamed meanwhile", text_hash="changed")
            return self.real.encode(texts, **kwargs)

    monkeypatch.setattr(embedding, "get_encoder", lambda: EditsMeanwhile(real))

    assert embedding.item_embeddings_refresh(item_ids=[item.id]) == 0
    assert vector_of(item) is None


def test_activity_text_gets_a_vector_and_the_user_an_interest(user):
    item = item_save(item=Item(external_id="kettle", title="Steel kettle", description="Boils water fast."))

    activity = activity_record(user=user, kind="review", item=item, text="Boils fast, great for tea", rating=5)

    activity.refresh_from_db()
    assert activity.embedding_status == "ok" and vector_of(activity) is not None
    interest = UserInterest.objects.get(user=user, cluster=0)
    assert interest.embedding_model == "all-MiniLM-L6-v2" and interest.n_events == 1
    tea = get_encoder().encode(["tea kettle"], kind="query").vectors[0]
    boots = get_encoder().encode(["winter hiking boots"], kind="query").vectors[0]
    assert float(np.dot(interest.embedding, tea)) > float(np.dot(interest.embedding, boots))


def test_behaviour_events_build_the_interest_from_item_vectors(user):
    item = item_save(item=Item(external_id="boot", title="Alpine boot", description="Waterproof hiking boot."))

    activity_record(user=user, kind="purchase", item=item)

    assert Activity.objects.get().embedding_status == "no_text"
    interest = UserInterest.objects.get(user=user)
    assert float(np.dot(interest.embedding, vector_of(Item.objects.get()))) > 0.999


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nul \x00 here", "NUL character"),
        ("broken \udcff bytes", "not valid UTF-8"),
        ("x" * 10_001, "the limit is 10000"),
    ],
)
def test_bad_text_is_refused_and_nothing_is_written(user, text, message):
    with pytest.raises(ApplicationError, match=message):
        activity_record(user=user, kind="search", text=text)

    assert not Activity.objects.exists()


def test_empty_review_text_is_a_review_without_words(user):
    activity = activity_record(user=user, kind="review", item=ItemFactory(), text="   ", rating=4)

    assert activity.text is None and activity.embedding_status == "no_text"


@pytest.mark.parametrize(
    "text",
    ["保温杯可以装热水多久？", "Loved it 😍🔥", " ".join(["very long words"] * 600)],
)
def test_chinese_emoji_and_long_texts_get_vectors(user, text):
    activity = activity_record(user=user, kind="search", text=text)

    activity.refresh_from_db()
    assert activity.embedding_status == "ok"
    assert np.isclose(np.linalg.norm(vector_of(activity)), 1.0, atol=1e-4)


def test_a_final_failure_marks_the_row_failed_with_the_error(settings):
    item = ItemFactory()
    settings.RECOMMENDER = {**settings.RECOMMENDER, "ENCODER_MODEL": "/nonexistent/model"}
    encoder_module.reset_encoder()

    result = embed_item.apply(kwargs={"row_id": item.id})

    assert result.failed()
    item.refresh_from_db()
    assert item.embedding_status == "failed"
    assert "/nonexistent/model" in item.embedding_error


def test_sweep_embeds_rows_left_pending_and_rebuilds_stale_interests(user):
    items = ItemFactory.create_batch(3)
    Activity.objects.create(user=user, kind="view", item=items[0], created_at="2026-10-01T00:00Z")
    Activity.objects.create(
        user=user, kind="search", text="trail shoes", created_at="2026-10-02T00:00Z", embedding_status="pending"
    )
    type(user).objects.filter(id=user.id).update(interest_stale=True)

    assert sweep_pending_embeddings.apply().get() is True

    assert set(Item.objects.values_list("embedding_status", flat=True)) == {"ok"}
    assert Activity.objects.get(kind="search").embedding_status == "ok"
    assert UserInterest.objects.filter(user=user).exists()
    assert embedding.embeddings_waiting_count() == {
        "items": 0,
        "activities": 0,
        "users": 0,
        "text_model_items": 0,
        "community": 0,
        "community_weight": 0,
    }
    assert sweep_pending_embeddings.apply().get() is False


def test_queue_reembedding_re_encodes_unchanged_items(counting):
    item = ItemFactory()
    embedding.item_embeddings_refresh(item_ids=[item.id])

    item_queue_reembedding(item_ids=[item.id])

    assert len(counting.texts) == 2
    assert Item.objects.get(id=item.id).embedding_status == "ok"


def test_only_one_pending_batch_runs_at_a_time():
    ItemFactory()
    # Another process (here: another connection) holds the batch's lock.
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [embedding.PENDING_LOCK_KEY])

        assert embedding.embeddings_process_pending()["skipped_locked"] == 1
        assert Item.objects.get().embedding_status == "pending"


def test_sweep_brings_kept_lists_up_to_date_when_the_task_after_an_activity_was_lost(user):
    from recommendations.models import PrecomputedList
    from recommendations.serving.service import recommend_for_user

    items = ItemFactory.create_batch(4)
    embedding.item_embeddings_refresh(item_ids=[item.id for item in items])
    recommend_for_user(user=user, k=3, log=False)  # their first request keeps their list
    # Written as during a broker outage: no task ran, the person is marked for the sweep.
    bought = Activity.objects.create(user=user, kind="purchase", item=items[0], created_at=timezone.now())
    type(user).objects.filter(id=user.id).update(interest_stale=True)
    assert PrecomputedList.objects.get(user=user).last_activity_id < bought.id

    assert sweep_pending_embeddings.apply().get() is True

    assert PrecomputedList.objects.get(user=user).last_activity_id == bought.id
    assert items[0].id not in PrecomputedList.objects.get(user=user).item_ids
    assert sweep_pending_embeddings.apply().get() is False  # nothing behind any more


def test_an_embedding_task_that_gives_up_during_a_database_outage_leaves_the_row_pending():
    from django.db import OperationalError

    item = ItemFactory()
    outage = OperationalError("connection failed: server closed the connection unexpectedly")

    embed_item.on_failure(outage, "task-id", (), {"row_id": item.id}, None)

    item.refresh_from_db()
    assert item.embedding_status == "pending"  # the sweep embeds it once the database is back
    assert embedding.embeddings_waiting_count()["items"] == 1


def test_sweep_rebuilds_an_interest_left_behind_by_a_task_that_stopped_after_embedding(user):
    activity_record(user=user, kind="search", text="trail shoes")  # eager: embedded, interest built
    built = UserInterest.objects.get(user=user).updated_at
    # The next one's task embedded its text and stopped there (worker killed, or retries given
    # up in a database outage): nothing is pending and nobody is marked.
    later = Activity.objects.create(user=user, kind="search", text="a rain jacket", created_at=timezone.now())
    embedding.activity_embeddings_refresh(activity_ids=[later.id])
    assert not type(user).objects.get(id=user.id).interest_stale
    assert embedding.embeddings_waiting_count()["users"] == 1

    assert sweep_pending_embeddings.apply().get() is True

    assert UserInterest.objects.get(user=user).updated_at > later.created_at > built
    assert embedding.embeddings_waiting_count() == {
        "items": 0,
        "activities": 0,
        "users": 0,
        "text_model_items": 0,
        "community": 0,
        "community_weight": 0,
    }
    assert sweep_pending_embeddings.apply().get() is False
