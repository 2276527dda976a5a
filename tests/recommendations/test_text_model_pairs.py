"""The text model's pairs and its refusals on a new install; its artifact without pickles."""

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from catalog.models import Item
from recommendations.ml.text_adapter import LinearAdapter
from recommendations.models import TextModel
from recommendations.serving.service import recommend_for_text
from recommendations.vectors import embedding
from recommendations.vectors.text_model import TextModelError, _text_pairs, text_model_train
from tests.factories import UserFactory
from users.models import Activity

pytestmark = pytest.mark.django_db

MODEL = "all-MiniLM-L6-v2"
NOON = datetime(2026, 10, 1, 12, tzinfo=UTC)


def test_pairs_are_questions_followed_by_a_choice_within_the_window_and_texts_about_an_item(user):
    kettle, teapot, tent, stove = (
        Item.objects.create(external_id=name, title=name.title()) for name in ("kettle", "teapot", "tent", "stove")
    )
    other = UserFactory()

    def activity(**fields):
        return Activity.objects.create(user=fields.pop("user", user), **fields)

    chosen = activity(kind="search", text="something to boil water", created_at=NOON)
    activity(kind="view", item=stove, created_at=NOON + timedelta(minutes=2))  # a view is not a choice
    activity(kind="click", item=kettle, created_at=NOON + timedelta(minutes=5))  # the first choice: the pair
    activity(kind="purchase", item=teapot, created_at=NOON + timedelta(minutes=9))
    activity(kind="search", text="a tent for two", created_at=NOON + timedelta(hours=2))
    activity(kind="purchase", item=tent, created_at=NOON + timedelta(hours=3))  # past the 30-minute window
    activity(kind="chat", text="which stove is lightest", created_at=NOON, user=other)  # nothing chosen after
    praised = activity(kind="review", item=tent, text="Kept us dry all week", rating=5, created_at=NOON)
    activity(kind="review", item=stove, text="Broke on the first day", rating=1, created_at=NOON)  # negative
    tagged = activity(kind="tag", item=teapot, text="  Gift  IDEA ", created_at=NOON)
    embedding.embeddings_process_pending()

    pairs = sorted(_text_pairs(MODEL))

    assert pairs == sorted(
        [
            (chosen.id, kettle.id, "something to boil water", "question_then_item", chosen.created_at),
            (praised.id, tent.id, "kept us dry all week", "text_about_item", praised.created_at),
            (tagged.id, teapot.id, "gift idea", "text_about_item", tagged.created_at),
        ]
    )


def test_a_new_install_refuses_to_train_and_the_frozen_encoder_keeps_answering(user):
    item = Item.objects.create(external_id="kettle", title="Steel kettle", description="Boils a litre fast.")
    Item.objects.create(external_id="tent", title="Two-person tent", description="Pitches in three minutes.")
    Activity.objects.create(user=user, kind="tag", item=item, text="fast boil", created_at=NOON)
    embedding.embeddings_process_pending()

    with pytest.raises(TextModelError) as refused:
        text_model_train()
    with pytest.raises(CommandError) as from_command:
        call_command("train_text_model", stdout=io.StringIO())

    message = "no text model trained: 1 (text -> item) pairs, at least 200 are needed (TEXT_MODEL_MIN_PAIRS)"
    assert str(refused.value).startswith(message) and "the frozen encoder keeps answering" in str(refused.value)
    assert str(from_command.value) == str(refused.value)
    assert not TextModel.objects.exists()
    answer = recommend_for_text(text="kettle", k=1, log=False, match_floor=None)
    assert [result.item.id for result in answer.results] == [item.id]
    assert not any("text model" in note for note in answer.notes)


def test_an_empty_catalog_refuses_to_train(db):
    with pytest.raises(TextModelError, match="0 items have all-MiniLM-L6-v2 vectors"):
        text_model_train()


def test_the_artifact_round_trips_as_plain_arrays_and_refuses_pickled_objects():
    rng = np.random.default_rng(0)
    adapter = LinearAdapter(rng.normal(size=(8, 8)).astype(np.float32), rng.normal(size=(8, 8)).astype(np.float32))

    loaded = LinearAdapter.from_bytes(adapter.to_bytes())

    assert np.array_equal(loaded.query_map, adapter.query_map) and np.array_equal(loaded.item_map, adapter.item_map)
    vectors = rng.normal(size=(3, 8))
    assert np.allclose(loaded.queries(vectors), adapter.queries(vectors))
    assert np.allclose(np.linalg.norm(loaded.items(vectors), axis=1), 1.0)
    # An artifact holding a Python object would need unpickling to load: refused.
    buffer = io.BytesIO()
    np.savez(buffer, query_map=np.array([{"run": "code"}], dtype=object), item_map=np.eye(2))
    with pytest.raises(ValueError, match="allow_pickle"):
        LinearAdapter.from_bytes(buffer.getvalue())
