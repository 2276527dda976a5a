"""Honest free-text answers with multilingual-e5-small: its floor, and the English model's second
opinion (serving.second_opinion), through the API with both real encoders.

The questions are calibration questions of bundles/demo_bundle/bilingual_queries.jsonl and the
items are the demo bundle's own, so the figures behind them are EVALUATION.md's ("Bilingual").
"""

import json
from pathlib import Path

import pytest

from catalog.models import Item
from recommendations.ml import encoder as encoder_module
from recommendations.ml.model_cards import model_card
from recommendations.retrieval.candidates import Candidate
from recommendations.serving.second_opinion import second_opinion
from recommendations.serving.service import recommend_for_text
from recommendations.vectors import embedding
from tests.api.conftest import client_for

# transaction=True: the e5 vectors' index is built CONCURRENTLY, outside any transaction.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

E5 = "multilingual-e5-small"
DEMO_ITEMS = Path(__file__).resolve().parents[2] / "bundles" / "demo_bundle" / "items.jsonl"
ITEMS = ("help-0008", "video-0049", "help-0057", "shop-0106")  # instalments, a Python lesson, buffering, 电饭煲


@pytest.fixture(autouse=True)
def _fresh_encoders():
    encoder_module.reset_encoder()
    yield
    encoder_module.reset_encoder()


@pytest.fixture
def e5_catalog(settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "ENCODER_MODEL": E5, "SERVING_MODEL": None}
    rows = [json.loads(line) for line in DEMO_ITEMS.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        if row["external_id"] in ITEMS:
            Item.objects.create(
                external_id=row["external_id"],
                title=row["title"],
                description=row["description"],
                category=row["category"],
                tags=row["tags"],
            )
    embedding.embeddings_process_pending()


def _ask(text: str) -> dict:
    response = client_for(None).post("/api/v1/recommendations/text/", {"text": text, "k": 2}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def test_an_english_near_miss_that_e5_rates_close_is_told_none_by_the_english_second_opinion(e5_catalog):
    body = _ask("how do I apply for a mortgage")

    # e5 alone would say close: its best item ("Buy now, pay later") is above its own floor.
    e5_says = recommend_for_text(text="how do I apply for a mortgage", k=1, log=False, match_floor=None)
    assert e5_says.results[0].item.external_id == "help-0008"
    assert e5_says.best_similarity is not None and e5_says.best_similarity >= model_card(E5).match_floor
    assert body["match"] == "none"
    assert all(result["sources"] == ["popular"] for result in body["results"])
    assert any("second opinion on English text (all-MiniLM-L6-v2) found nothing close" in n for n in body["notes"])


def test_an_answerable_english_question_stays_close(e5_catalog):
    body = _ask("the video keeps buffering")

    assert body["match"] == "close"
    assert body["results"][0]["item"]["external_id"] == "help-0057"


def test_an_english_question_whose_answer_is_chinese_is_left_to_e5(e5_catalog):
    # The English model cannot read 禾风 智能电饭煲 (a rice cooker): it is not asked.
    text = "a rice cooker I can set the night before so porridge is ready in the morning"

    body = _ask(text)

    assert body["match"] == "close"
    assert body["results"][0]["item"]["external_id"] == "shop-0106"
    assert not any("second opinion" in note for note in body["notes"])


def test_a_chinese_question_gets_no_second_opinion(e5_catalog):
    item = Item.objects.get(external_id="help-0008")
    candidate = Candidate(item_id=item.id, semantic=0.5)

    assert second_opinion(text="我想申请房贷", candidates={item.id: candidate}, model_name=E5) is None
    english = second_opinion(text="how do I apply for a mortgage", candidates={item.id: candidate}, model_name=E5)
    assert english is not None and english.model == "all-MiniLM-L6-v2" and english.nothing_close
