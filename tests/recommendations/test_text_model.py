"""The learned text model on a catalog whose community words its catalog text does not carry:
training, validation on later questions, versions, activation and the switch of serving."""

import io

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from catalog.models import Item, ItemVector
from catalog.services import item_save
from core.vector_wire import VectorDigest
from recommendations.ml.text_adapter import LinearAdapter
from recommendations.models import TextModel
from recommendations.serving.service import recommend_for_text
from recommendations.vectors import embedding
from recommendations.vectors.text_model import (
    TextModelError,
    items_behind,
    reset_text_models,
    text_model_activate,
    text_model_deactivate,
    text_model_train,
    text_space,
)
from tests.recommendations.conftest import community_words_world_build
from tests.worlds import module_world
from users.models import Activity

pytestmark = pytest.mark.django_db

MODEL = "all-MiniLM-L6-v2"

_rows, _copy = module_world(community_words_world_build)


@pytest.fixture
def world(_rows, db):
    reset_text_models()
    yield _copy(_rows)
    reset_text_models()


def _digest(row: ItemVector) -> str:
    """The digest of a served vector, as a text model's vector of the item records it."""
    return (
        ItemVector.objects.filter(pk=row.pk)
        .annotate(digest=VectorDigest("embedding"))
        .values_list("digest", flat=True)[0]
    )


def _series_of(answer) -> list[str]:
    return [result.item.category.removeprefix("Series ") for result in answer.results]


# Later-style questions the training never saw, one per written-about series.
UNSEEN = {
    "A": "hiking boots for a mountain trek",
    "B": "a pot of green tea",
    "C": "saxophone jazz",
    "D": "baking bread",
}


def test_training_learns_the_community_words_and_activates_a_version_that_beats_the_frozen_encoder(world):
    version = text_model_train()

    metrics = version.validation_metrics
    assert version.version == 1 and version.algorithm == "linear_adapter" and version.base_model == MODEL
    assert version.training_pairs == {"question_then_item": 0, "text_about_item": 360, "recent_items_then_next": 0}
    # The latest 20% of the 72 phrases (15) validate; they never trained the validated model.
    assert metrics["validation_questions"] == 15
    assert metrics["training_pairs"] + metrics["validation_pairs"] == 360
    assert metrics["ndcg@20"] > metrics["frozen_ndcg@20"] + 0.2
    assert version.is_active and version.notes.startswith("activated")
    assert version.trained_from < version.trained_until
    # Every item's vector under the version's own key, made from the same text as the served one.
    assert ItemVector.objects.filter(model_name=version.vector_key).count() == Item.objects.count() == 64
    assert items_behind(version) == []


def test_serving_answers_unseen_questions_with_the_active_text_model(world):
    text_model_train()

    for series, question in UNSEEN.items():
        learned = recommend_for_text(text=question, k=5, log=False, match_floor=None, popularity_weight=0.0)
        frozen = recommend_for_text(
            text=question, k=5, log=False, match_floor=None, popularity_weight=0.0, text_model="frozen"
        )

        assert _series_of(learned).count(series) >= 4, (question, _series_of(learned))
        assert _series_of(frozen).count(series) < _series_of(learned).count(series)
        assert any("text model v1" in note for note in learned.notes)
        assert not any("text model" in note for note in frozen.notes)


def test_training_against_the_whole_catalog_is_a_setting_and_serves_unseen_questions(world, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "TEXT_MODEL_CATALOG_NEGATIVES": 1_000}

    version = text_model_train()

    metrics = version.validation_metrics
    assert metrics["hyper_parameters"]["catalog_negatives"] == 1_000
    assert metrics["ndcg@20"] > metrics["frozen_ndcg@20"] + 0.2 and version.is_active
    for series, question in UNSEEN.items():
        answer = recommend_for_text(text=question, k=5, log=False, match_floor=None, popularity_weight=0.0)
        assert _series_of(answer).count(series) >= 4, (question, _series_of(answer))


def test_a_version_not_activated_leaves_serving_on_the_frozen_encoder_until_it_is_activated(world):
    version = text_model_train(activate=False)
    question = UNSEEN["A"]

    assert not version.is_active and version.notes == "not activated: activation not asked for"
    assert text_space(base_model=MODEL).is_frozen
    before = recommend_for_text(text=question, k=5, log=False, match_floor=None, popularity_weight=0.0)
    assert not any("text model" in note for note in before.notes)

    text_model_activate(text_model=version)

    space = text_space(base_model=MODEL)
    assert space.version == version.version and space.item_model == version.vector_key
    after = recommend_for_text(text=question, k=5, log=False, match_floor=None, popularity_weight=0.0)
    assert _series_of(after).count("A") >= 4

    assert text_model_deactivate(base_model=MODEL) == 1
    assert text_space(base_model=MODEL).is_frozen
    again = recommend_for_text(text=question, k=5, log=False, match_floor=None, popularity_weight=0.0)
    assert [result.item.id for result in again.results] == [result.item.id for result in before.results]


def test_activation_catches_up_items_embedded_after_the_version_was_trained(world):
    version = text_model_train(activate=False)
    # Embedded while no version is active: its vector under the version's key is not written yet.
    late = item_save(item=Item(external_id="late", title="Model A-99", category="Series A"))
    embedding.item_embeddings_refresh(item_ids=[late.id])
    assert not ItemVector.objects.filter(item=late, model_name=version.vector_key).exists()

    text_model_activate(text_model=version)

    served = ItemVector.objects.get(item=late, model_name=MODEL)
    adapted = ItemVector.objects.get(item=late, model_name=version.vector_key)
    assert adapted.text_hash == _digest(served)
    expected = LinearAdapter.from_bytes(version.artifact).items(np.asarray(served.embedding))
    assert np.allclose(np.asarray(adapted.embedding), expected, atol=1e-5)


def test_an_item_embedded_or_edited_while_a_version_serves_gets_its_vector_at_once(world):
    version = text_model_train()
    item = item_save(item=Item(external_id="new", title="Model B-50", category="Series B"))
    embedding.item_embeddings_refresh(item_ids=[item.id])
    first = ItemVector.objects.get(item=item, model_name=version.vector_key)

    item.title = "Model B-51"
    item_save(item=item)
    embedding.item_embeddings_refresh(item_ids=[item.id])

    edited = ItemVector.objects.get(item=item, model_name=version.vector_key)
    assert edited.text_hash == _digest(ItemVector.objects.get(item=item, model_name=MODEL)) != first.text_hash
    assert embedding.embeddings_waiting_count()["text_model_items"] == 0


def test_a_second_version_with_no_question_newer_than_the_active_one_is_stored_but_not_activated(world):
    first = text_model_train()
    # The same pairs: the active version learned every validation question, nothing shows the new one better.
    second = text_model_train()

    first.refresh_from_db()
    assert first.is_active and not second.is_active
    assert "0 validation questions were written since the active version v1 was trained" in second.notes
    assert second.validation_metrics["active_version"] == 1
    assert TextModel.objects.filter(is_active=True).count() == 1


def test_activating_another_version_moves_the_flag_and_keeps_the_replaced_versions_vectors(world):
    first = text_model_train()
    second = text_model_train(activate=False)

    text_model_activate(text_model=second)

    first.refresh_from_db()
    assert not first.is_active and TextModel.objects.get(is_active=True) == second
    # A request that read the first as active a moment before still finds its vectors.
    assert ItemVector.objects.filter(model_name=first.vector_key).count() == 64
    third = text_model_train(activate=False)
    text_model_activate(text_model=third)
    assert not ItemVector.objects.filter(model_name=first.vector_key).exists()
    assert ItemVector.objects.filter(model_name=second.vector_key).count() == 64


def test_the_command_trains_and_reports_the_validation(world):
    out = io.StringIO()

    call_command("train_text_model", "--no-activate", stdout=out)

    text = out.getvalue()
    assert "text model v1 linear_adapter over all-MiniLM-L6-v2: validation ndcg@20" in text
    assert "on 15 later questions" in text and "text_about_item 360" in text
    assert "ACTIVE" not in text and "not activated: activation not asked for" in text


def test_too_few_pairs_refuses_with_a_clear_message_and_keeps_the_frozen_encoder(world, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "TEXT_MODEL_MIN_PAIRS": 1000}

    with pytest.raises(TextModelError, match=r"360 \(text -> item\) pairs, at least 1000 are needed"):
        text_model_train()

    assert not TextModel.objects.exists()
    assert text_space(base_model=MODEL).is_frozen


def test_a_new_community_text_or_weight_refreshes_the_active_versions_item_vectors(world, settings):
    # Before the fix they followed the catalog text's hash only: new words about an item, or a
    # new COMMUNITY_WEIGHT, left the text model answering with the item as it was described before.
    version = text_model_train()
    adapter = LinearAdapter.from_bytes(version.artifact)
    item = world["items"][("A", 0)]
    before = np.asarray(ItemVector.objects.get(item=item, model_name=version.vector_key).embedding)

    Activity.objects.create(
        user=world["people"][0], item=item, kind="tag", text="a quiet piano ballad", created_at=timezone.now()
    )
    Item.objects.filter(id=item.id).update(community_stale=True)
    embedding.embeddings_process_pending()

    served = np.asarray(ItemVector.objects.get(item=item, model_name=MODEL).embedding)
    adapted = np.asarray(ItemVector.objects.get(item=item, model_name=version.vector_key).embedding)
    assert not np.allclose(adapted, before, atol=1e-4)
    assert np.allclose(adapted, adapter.items(served), atol=1e-5)

    settings.RECOMMENDER = {**settings.RECOMMENDER, "COMMUNITY_WEIGHT": 3.0}
    embedding.embeddings_process_pending()
    served = np.asarray(ItemVector.objects.get(item=item, model_name=MODEL).embedding)
    assert np.allclose(
        np.asarray(ItemVector.objects.get(item=item, model_name=version.vector_key).embedding),
        adapter.items(served),
        atol=1e-5,
    )
    assert items_behind(version) == []


def test_the_sweep_finds_a_version_behind_when_only_the_served_vector_changed(world):
    version = text_model_train()
    item = world["items"][("B", 1)]
    # As a stopped task would leave it: the served vector rewritten, the text model's not.
    ItemVector.objects.filter(item=item, model_name=MODEL).update(
        embedding=np.asarray(ItemVector.objects.get(item=world["items"][("C", 1)], model_name=MODEL).embedding)
    )

    assert items_behind(version) == [item.id]
    assert embedding.embeddings_process_pending()["text_model_items"] == 1
    assert items_behind(version) == []
