"""Scoring the candidates: the active ranker, the documented blend, or one source's own order."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np

from recommendations.ranking.active import RankerError, active_ranker, blend_scores, feature_matrix, ranker_version
from recommendations.ranking.features import FEATURES, features_compute
from recommendations.retrieval.candidates import Candidate, candidates_gather
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.person import PersonState
from recommendations.retrieval.popular import item_stats_for
from recommendations.retrieval.semantic import item_vectors_for
from recommendations.serving.rules import item_categories

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scoring:
    """What ordered a list, as the answer names it and the log records it."""

    ranker: str  # "lambdarank v3", "blend", "popular source order"
    ranker_id: int | None  # the RankerModel that scored; None: the blend or one source's order
    fallback: bool  # not the trained ranker a plain request asks for
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RankedList:
    """Every candidate of a person's sources, scored, best first (ties by id)."""

    candidates: list[Candidate]
    categories: dict[int, str]  # item -> category, for the per-category cap
    scoring: Scoring
    notes: tuple[str, ...]  # the scoring's notes and what the person's state adds


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


def _scores_set(candidates: list[Candidate], scores: np.ndarray) -> None:
    for candidate, score in zip(candidates, scores, strict=True):
        candidate.score = float(score)


def candidates_score(
    candidates: list[Candidate], *, scoring: str, sources: tuple[str, ...], ranker_id: int | None = None
) -> Scoring:
    """Score candidates with the active ranker (or, `ranker_id` given, that stored version: an
    experiment's arm), the documented blend, or (scoring="source", one source asked) that
    source's own order."""
    if scoring == "source":
        (source,) = sources
        for candidate in candidates:
            candidate.score = 1.0 / (1 + candidate.sources[source])
        return Scoring(
            ranker=f"{source} source order",
            ranker_id=None,
            fallback=True,
            notes=(f"ordered by the {source} source alone (an ablation)",),
        )
    rows = [candidate.feature_row() for candidate in candidates]
    if scoring != "auto":
        version, model = None, None
    else:
        version, model = active_ranker() if ranker_id is None else ranker_version(ranker_id)
    reason = "no trained ranker is active" if scoring == "auto" else "the blend was asked for"
    if version is not None and model is not None:
        try:
            scores = model.score(feature_matrix(rows, model.features))
        except RankerError as error:
            logger.error("ranker v%d cannot score: %s", version.version, error)
            # The active version is there but could not score: say so, not that none is active.
            reason = f"ranker v{version.version} cannot score: {error}"
        else:
            _scores_set(candidates, scores)
            return Scoring(ranker=f"{model.algorithm} v{version.version}", ranker_id=version.pk, fallback=False)
    _scores_set(candidates, blend_scores(feature_matrix(rows, list(FEATURES))))
    return Scoring(
        ranker="blend", ranker_id=None, fallback=True, notes=(f"{reason}: results use the documented blend",)
    )


def ranked_for_user(
    *,
    state: PersonState,
    filters: ItemFilters,
    size: int,
    model_name: str,
    sources: tuple[str, ...],
    scoring: str,
    ranker_id: int | None = None,
) -> RankedList:
    """Every candidate of the person's sources, scored, best first (ties by id); with their
    categories (for the cap), the scoring that was used, and notes."""
    if "semantic" not in sources:
        # Without the semantic source its interest vectors must not reach the features either;
        # the caller's state stays as it was read (its reasons still quote the person's words).
        state = replace(state, interests=[])
    describe = scoring != "source"  # a source's own order needs no features
    candidates = candidates_gather(
        state=state, filters=filters, size=size, model_name=model_name, sources=sources, describe=describe
    )
    if describe:
        fields = features_compute(state=state, candidates=candidates, model_name=model_name, size=size)
        categories = {item_id: values["category"] for item_id, values in fields.items()}
    else:
        categories = item_categories(candidates)
    used = candidates_score(list(candidates.values()), scoring=scoring, sources=sources, ranker_id=ranker_id)
    notes = used.notes
    if not state.history:
        notes += ("no history yet: popular items and anything you typed",)
    ordered = sorted(candidates.values(), key=lambda candidate: (-candidate.score, candidate.item_id))
    return RankedList(candidates=ordered, categories=categories, scoring=used, notes=notes)
