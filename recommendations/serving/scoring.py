"""Scoring the candidates: the active ranker, the documented blend, or one source's own order."""

from __future__ import annotations

import logging
import math

import numpy as np

from recommendations.ranking.active import RankerError, active_ranker, blend_scores, feature_matrix
from recommendations.ranking.features import FEATURES, features_compute
from recommendations.retrieval.candidates import Candidate, candidates_gather
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.person import PersonState
from recommendations.retrieval.popular import item_stats_for
from recommendations.retrieval.semantic import item_vectors_for
from recommendations.serving.rules import item_categories


def similarity_and_popularity(
    candidates: dict[int, Candidate], *, query_vectors: list[np.ndarray], model_name: str
) -> None:
    """Semantic similarity and popularity for every candidate, in two queries (no N+1)."""
    ids = list(candidates)
    if query_vectors:
        vectors = item_vectors_for(item_ids=ids, model_name=model_name)
        queries = np.stack(query_vectors)
        for item_id, vector in vectors.items():
            candidates[item_id].semantic = float(np.max(queries @ vector))
    for item_id, stored in item_stats_for(item_ids=ids).items():
        candidates[item_id].popularity = math.log1p(stored.people)


def candidates_score(
    candidates: list[Candidate], *, scoring: str, sources: tuple[str, ...]
) -> tuple[str, bool, list[str]]:
    """Score candidates with the active ranker, the documented blend, or (scoring="source", one
    source asked) that source's own order. Returns (ranker name, fallback?, notes)."""
    if scoring == "source":
        (source,) = sources
        for candidate in candidates:
            candidate.score = 1.0 / (1 + candidate.sources[source])
        return f"{source} source order", True, [f"ordered by the {source} source alone (an ablation)"]
    rows = [candidate.features for candidate in candidates]
    version, model = active_ranker() if scoring == "auto" else (None, None)
    if model is not None:
        try:
            scores = model.score(feature_matrix(rows, model.features))
        except RankerError as error:
            logger.error("ranker v%d cannot score: %s", version.version, error)
        else:
            for candidate, score in zip(candidates, scores, strict=True):
                candidate.score = float(score)
            return f"{model.algorithm} v{version.version}", False, []
    scores = blend_scores(feature_matrix(rows, list(FEATURES)))
    for candidate, score in zip(candidates, scores, strict=True):
        candidate.score = float(score)
    reason = "no trained ranker is active" if scoring == "auto" else "the blend was asked for"
    return "blend", True, [f"{reason}: results use the documented blend"]


def ranked_for_user(
    *,
    state: PersonState,
    filters: ItemFilters,
    size: int,
    model_name: str,
    sources: tuple[str, ...],
    scoring: str,
) -> tuple[list[Candidate], dict[int, str], str, bool, list[str]]:
    """Every candidate of the person's sources, scored, best first (ties by id); with their
    categories (for the cap), the ranker's name, whether it fell back, and notes."""
    if "semantic" not in sources:
        state.interests = []
    describe = scoring != "source"  # a source's own order needs no features
    candidates = candidates_gather(
        state=state, filters=filters, size=size, model_name=model_name, sources=sources, describe=describe
    )
    if describe:
        fields = features_compute(state=state, candidates=candidates, model_name=model_name, size=size)
        categories = {item_id: values["category"] for item_id, values in fields.items()}
    else:
        categories = item_categories(candidates)
    ranker, fallback, notes = candidates_score(list(candidates.values()), scoring=scoring, sources=sources)
    if not state.history:
        notes.append("no history yet: popular items and anything you typed")
    ordered = sorted(candidates.values(), key=lambda candidate: (-candidate.score, candidate.item_id))
    return ordered, categories, ranker, fallback, notes


logger = logging.getLogger(__name__)
