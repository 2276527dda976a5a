"""Each model's conventions in one place, and the encoder following them."""

from dataclasses import replace

import numpy as np
import pytest

from recommendations.ml.encoder import Encoder, model_dimensions
from recommendations.ml.model_cards import MODEL_CARDS, model_card


def test_every_packaged_model_has_a_complete_card():
    for name, card in MODEL_CARDS.items():
        assert card.name == name
        assert card.dimensions and card.max_tokens and card.pooling == "mean" and card.normalised
        assert card.licence != "unknown" and card.weights
        assert bool(card.package) != bool(card.converted_from), name


def test_e5_declares_its_prefixes_and_the_licences_say_what_a_business_may_use():
    e5 = model_card("multilingual-e5-small")

    assert (e5.prefix("query"), e5.prefix("passage")) == ("query: ", "passage: ")
    assert e5.commercial_use and e5.licence == "MIT"
    assert model_card("all-MiniLM-L6-v2").commercial_use
    assert not model_card("m3e-small").commercial_use
    assert model_card("all-MiniLM-L6-v2").prefix("query") == ""


def test_a_model_named_by_folder_gets_a_plain_card():
    card = model_card("/srv/models/my-encoder")

    assert card.name == "/srv/models/my-encoder" and card.prefix("query") == card.prefix("passage") == ""
    assert card.dimensions is None and card.match_floor is None and not card.commercial_use


def test_an_unknown_text_kind_is_refused():
    with pytest.raises(ValueError, match="text kind must be one of"):
        model_card("multilingual-e5-small").prefix("document")


def test_dimensions_come_from_the_card_without_loading_the_model():
    assert model_dimensions("multilingual-e5-small") == 384
    assert model_dimensions("m3e-small") == 512


@pytest.fixture(scope="module")
def minilm():
    return Encoder("all-MiniLM-L6-v2", runtime="fp32")


def test_the_encoder_puts_the_cards_prefix_before_each_kind_of_text(minilm, monkeypatch):
    monkeypatch.setattr(minilm, "card", replace(minilm.card, query_prefix="query: ", passage_prefix="passage: "))

    as_query = minilm.encode(["waterproof boots"], kind="query").vectors
    as_passage = minilm.encode(["waterproof boots"], kind="passage").vectors
    monkeypatch.setattr(minilm, "card", model_card("all-MiniLM-L6-v2"))

    assert np.allclose(as_query, minilm.encode(["query: waterproof boots"], kind="query").vectors, atol=1e-6)
    assert np.allclose(as_passage, minilm.encode(["passage: waterproof boots"], kind="query").vectors, atol=1e-6)
    assert not np.allclose(as_query, as_passage, atol=1e-3)


def test_e5s_english_second_opinion_is_a_packaged_english_model_with_its_own_floor():
    second = model_card(model_card("multilingual-e5-small").english_second_opinion or "")

    assert second.name in MODEL_CARDS and second.languages == "English" and second.commercial_use
    assert second.match_floor is not None
    assert second.english_second_opinion is None  # one second opinion, never a chain
