"""The candidates every source proposes for a person, merged, with the behaviour evidence of all of
them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.conf import recommender_settings
from recommendations.retrieval.behaviour import active_behaviour_model_id, behaviour_scores
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.person import PersonState
from recommendations.retrieval.popular import fresh_candidates, popular_candidates
from recommendations.retrieval.semantic import item_vectors_for, semantic_candidates

SOURCES = ("behaviour", "semantic", "popular", "fresh")


@dataclass
class Candidate:
    item_id: int
    sources: dict[str, int] = field(default_factory=dict)  # source -> rank (0 = its best)
    behaviour: float = 0.0
    behaviour_recent: float = 0.0
    behaviour_liked: float = 0.0
    behaviour_last: float = 0.0  # from the person's newest item alone
    semantic: float = 0.0
    popularity: float = 0.0  # log(1 + people)
    features: np.ndarray | None = None  # FEATURES order, filled by ranking.features.features_compute
    score: float = 0.0

    def feature_row(self) -> np.ndarray:
        if self.features is None:
            raise ValueError(f"candidate {self.item_id} has no features: features_compute describes it first")
        return self.features


def merge_ranked(candidates: dict[int, Candidate], source: str, ranked: list[tuple[int, float]]) -> None:
    for rank, (item_id, _score) in enumerate(ranked):
        candidates.setdefault(item_id, Candidate(item_id)).sources[source] = rank


def candidates_gather(
    *,
    state: PersonState,
    filters: ItemFilters,
    size: int,
    model_name: str,
    sources: tuple[str, ...] = SOURCES,
    behaviour_model_id: int | None = None,
    describe: bool = True,
) -> dict[int, Candidate]:
    """Every source's proposals for the person, with the behaviour evidence of all of them
    (describe=False: only the sources' own proposals, for an ablation ordered by one source)."""
    config = recommender_settings()
    candidates: dict[int, Candidate] = {}
    if "semantic" in sources and state.interests:
        merge_ranked(
            candidates,
            "semantic",
            semantic_candidates(vectors=state.interests, model_name=model_name, filters=filters, k=size),
        )
    if "popular" in sources:
        merge_ranked(candidates, "popular", popular_candidates(filters=filters, k=size, by=config.popular_by))
    if "fresh" in sources and config.fresh_candidates:
        fresh = fresh_candidates(filters=filters, k=config.fresh_candidates, days=config.fresh_days, now=state.as_of)
        merge_ranked(candidates, "fresh", fresh)
    if state.history and (describe or "behaviour" in sources):
        model_id = behaviour_model_id or active_behaviour_model_id()
        scores = behaviour_scores(
            history=state.history,
            recent=state.recent,
            liked=state.liked,
            last=dict(list(state.history.items())[:1]),
            filters=filters,
            k=size if "behaviour" in sources else 0,
            model_id=model_id,
            also=list(candidates) if describe else [],
        )
        for item_id, evidence in scores.items():
            if evidence.rank is not None:
                candidates.setdefault(item_id, Candidate(item_id)).sources["behaviour"] = evidence.rank
            if item_id in candidates:
                candidates[item_id].behaviour = evidence.score
                candidates[item_id].behaviour_recent = evidence.recent
                candidates[item_id].behaviour_liked = evidence.liked
                candidates[item_id].behaviour_last = evidence.last
    return candidates


def item_vectors_with_recent(
    *, state: PersonState, item_ids: list[int], model_name: str
) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
    """Vectors of the candidates and of the person's recent items, in one query."""
    vectors = item_vectors_for(item_ids=set(item_ids) | set(state.recent), model_name=model_name)
    recent = [vectors[item_id] for item_id in state.recent if item_id in vectors]
    return vectors, (np.stack(recent) if recent else None)
