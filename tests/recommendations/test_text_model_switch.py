"""Switching the text model while free-text questions are answered and items are embedded:
committed rows, real threads, each with its own database connection."""

import threading

import pytest
from django.db import connection

from catalog.models import Item, ItemVector
from catalog.services import item_save
from recommendations.models import TextModel
from recommendations.serving.service import recommend_for_text
from recommendations.vectors import embedding
from recommendations.vectors.text_model import items_behind, reset_text_models, text_model_activate, text_model_train
from tests.recommendations.conftest import community_words_world_build

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUESTION = "hiking boots for a mountain trek"


def _ask() -> tuple[list[int], bool]:
    answer = recommend_for_text(text=QUESTION, k=10, log=False, match_floor=None, popularity_weight=0.0)
    return [result.item.id for result in answer.results], any("text model v1" in note for note in answer.notes)


def test_answers_during_an_activation_come_from_one_model_whole_and_items_embedded_meanwhile_are_caught_up():
    community_words_world_build()
    reset_text_models()
    version = text_model_train(activate=False)
    frozen, _note = _ask()
    answers: list[tuple[list[int], bool]] = []
    new_items: list[int] = []
    errors: list[Exception] = []
    activated = threading.Event()

    def asking() -> None:
        try:
            while not activated.is_set():
                answers.append(_ask())
            answers.append(_ask())
        except Exception as error:  # noqa: BLE001 - reported below: a thread's failure must fail the test
            errors.append(error)
        finally:
            connection.close()

    def embedding_items() -> None:
        try:
            number = 0
            while not activated.is_set() or number < 3:
                # Inactive: never in an answer (the answers compared stay the same), embedded all the same.
                item = item_save(
                    item=Item(
                        external_id=f"late-{number}", title=f"Model E-{number}", category="Series E", is_active=False
                    )
                )
                embedding.item_embeddings_refresh(item_ids=[item.id])
                new_items.append(item.id)
                number += 1
        except Exception as error:  # noqa: BLE001 - reported below, as the asking thread's
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=asking), threading.Thread(target=embedding_items)]
    for thread in threads:
        thread.start()
    try:
        text_model_activate(text_model=version)
    finally:
        activated.set()
        for thread in threads:
            thread.join(timeout=120)
    assert not errors, errors

    learned, learned_note = _ask()
    assert learned_note and learned != frozen
    # Every answer is the frozen encoder's or the text model's, never a mix of the two spaces.
    assert answers and all(ids == (learned if note else frozen) for ids, note in answers), answers
    version.refresh_from_db()
    assert version.is_active and TextModel.objects.filter(is_active=True).count() == 1
    assert new_items and items_behind(version) == []
    assert ItemVector.objects.filter(model_name=version.vector_key, item_id__in=new_items).count() == len(new_items)
