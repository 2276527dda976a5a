"""What the recommender knows of a person at one moment, and the candidates its sources propose.

One code path for serving and for the re-ranker's training: serving reads the person as they
are now; training reads them as they were at a past cut-off (`as_of`), with a behaviour model
built from the interactions before it, so the features it learns from are the features it
will see (no leakage of the interactions it must predict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db.models import Q

from catalog.models import ItemVector
from core.vector_wire import VectorBytes, vector_from_bytes
from recommendations import selectors
from recommendations.embedding import user_interests_compute
from recommendations.models import UserInterest
from recommendations.selectors import ItemFilters
from users.models import Activity, ActivityKind, ActivityVector

SOURCES = ("behaviour", "semantic", "popular", "fresh")
# The person's latest items: where their taste is going now (behaviour and semantic features).
RECENT_ITEMS = 10
# Stars from which a rating says "I liked it" (the behaviour-liked feature).
LIKED_RATING = 4.0
# Their own words read for the text-match feature and the explanations.
TEXTS_READ = 200


@dataclass
class PersonState:
    user_id: int
    history: dict[int, float]  # item -> weight for the behaviour source, most recent first
    recent: dict[int, float]  # their latest RECENT_ITEMS items -> 1.0
    liked: dict[int, float]  # items they clearly liked (4+ stars, bought, carted) -> 1.0
    evidence: dict[int, tuple[str, float | None]]  # item -> (strongest kind, rating)
    seen: set[int]
    interests: list[np.ndarray]
    texts: list[tuple[str, np.ndarray]]  # (their words, vector), newest first
    moment: datetime | None  # their newest activity
    as_of: datetime | None  # None: now


def _before(as_of: datetime | None) -> Q:
    return Q() if as_of is None else Q(created_at__lt=as_of)


def person_state(*, user_id: int, model_name: str, as_of: datetime | None = None) -> PersonState:
    """The person now (as_of None) or as they were just before as_of. Three or four queries."""
    config = settings.RECOMMENDER
    activities = Activity.objects.filter(_before(as_of), user_id=user_id)
    # All their item activities in one read (a few thousand rows for the heaviest MovieLens
    # person): everything they ever touched is "seen", not only the recent items the behaviour
    # source reads, so an old purchase never comes back as a recommendation.
    every = list(
        activities.filter(item__isnull=False)
        .order_by("-created_at", "-id")
        .values_list("item_id", "kind", "rating", "created_at")
    )
    excluded_kinds = set(config["EXCLUDE_SEEN_KINDS"])
    seen = {row[0] for row in every if row[1] in excluded_kinds}
    rows = every[: config["HISTORY_ITEMS"]]
    history: dict[int, float] = {}
    evidence: dict[int, tuple[str, float | None]] = {}
    dismissed: set[int] = set()
    for item_id, kind, rating, _created_at in rows:
        if kind == ActivityKind.DISMISS:
            dismissed.add(item_id)
            continue
        if item_id in dismissed:
            continue
        # Every interaction counts once (the behaviour model was learned from binary rows).
        history.setdefault(item_id, 1.0)
        evidence.setdefault(item_id, (kind, rating))
    recent = {item_id: 1.0 for item_id in list(history)[:RECENT_ITEMS]}
    liked = {
        item_id: 1.0
        for item_id, (kind, rating) in evidence.items()
        if (rating is not None and rating >= LIKED_RATING)
        or (rating is None and kind in (ActivityKind.PURCHASE, ActivityKind.ADD_TO_CART))
    }
    if as_of is None:
        interests = [
            vector_from_bytes(raw)
            for raw in UserInterest.objects.filter(user_id=user_id, embedding_model=model_name)
            .order_by("cluster")
            .annotate(raw=VectorBytes("embedding"))
            .values_list("raw", flat=True)
        ]
    else:
        interests = [
            interest.vector for interest in user_interests_compute(user_id=user_id, model_name=model_name, as_of=as_of)
        ]
    texts = [
        (text, vector_from_bytes(raw))
        for text, raw in ActivityVector.objects.filter(
            Q() if as_of is None else Q(activity__created_at__lt=as_of),
            activity__user_id=user_id,
            model_name=model_name,
        )
        .order_by("-activity__created_at")
        .annotate(raw=VectorBytes("embedding"))
        .values_list("activity__text", "raw")[:TEXTS_READ]
    ]
    moment = rows[0][3] if rows else None
    return PersonState(
        user_id=user_id,
        history=history,
        recent=recent,
        liked=liked,
        evidence=evidence,
        seen=seen,
        interests=interests,
        texts=texts,
        moment=moment,
        as_of=as_of,
    )


@dataclass
class Candidate:
    item_id: int
    sources: dict[str, int] = field(default_factory=dict)  # source -> rank (0 = its best)
    behaviour: float = 0.0
    behaviour_recent: float = 0.0
    behaviour_liked: float = 0.0
    semantic: float = 0.0
    popularity: float = 0.0  # log(1 + people)
    features: np.ndarray | None = None
    score: float = 0.0


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
    config = settings.RECOMMENDER
    candidates: dict[int, Candidate] = {}
    if "semantic" in sources and state.interests:
        merge_ranked(
            candidates,
            "semantic",
            selectors.semantic_candidates(vectors=state.interests, model_name=model_name, filters=filters, k=size),
        )
    if "popular" in sources:
        merge_ranked(
            candidates, "popular", selectors.popular_candidates(filters=filters, k=size, by=config["POPULAR_BY"])
        )
    if "fresh" in sources and config["FRESH_CANDIDATES"]:
        fresh = selectors.fresh_candidates(
            filters=filters, k=config["FRESH_CANDIDATES"], days=config["FRESH_DAYS"], now=state.as_of
        )
        merge_ranked(candidates, "fresh", fresh)
    if state.history and (describe or "behaviour" in sources):
        model_id = behaviour_model_id or selectors.active_behaviour_model_id()
        scores = selectors.behaviour_scores(
            history=state.history,
            recent=state.recent,
            liked=state.liked,
            filters=filters,
            k=size if "behaviour" in sources else 0,
            model_id=model_id,
            also=list(candidates) if describe else [],
        )
        for item_id, (rank, score, recent, liked) in scores.items():
            if rank is not None:
                candidates.setdefault(item_id, Candidate(item_id)).sources["behaviour"] = rank
            if item_id in candidates:
                candidates[item_id].behaviour = score
                candidates[item_id].behaviour_recent = recent
                candidates[item_id].behaviour_liked = liked
    return candidates


def item_vectors_with_recent(
    *, state: PersonState, item_ids: list[int], model_name: str
) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
    """Vectors of the candidates and of the person's recent items, in one query."""
    wanted = set(item_ids) | set(state.recent)
    rows = (
        ItemVector.objects.filter(item_id__in=selectors.id_array(wanted), model_name=model_name)
        .annotate(raw=VectorBytes("embedding"))
        .values_list("item_id", "raw")
    )
    vectors = {item_id: vector_from_bytes(raw) for item_id, raw in rows}
    recent = [vectors[item_id] for item_id in state.recent if item_id in vectors]
    return vectors, (np.stack(recent) if recent else None)


def serving_model() -> str:
    """The encoder model whose vectors answer queries (the old one during an encoder change)."""
    config = settings.RECOMMENDER
    return config["SERVING_MODEL"] or config["ENCODER_MODEL"]
