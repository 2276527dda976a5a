"""What the recommender knows of a person at one moment.

One code path for serving and for the re-ranker's training: serving reads the person as they
are now; training reads them as they were at a past cut-off (`as_of`), with a behaviour model
built from the interactions before it, so the features it learns from are the features it
will see (no leakage of the interactions it must predict).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db.models import Q

from core.conf import recommender_settings
from core.vector_wire import VectorBytes, vector_from_bytes
from recommendations.models import UserInterest
from recommendations.retrieval.history import interaction_history
from recommendations.retrieval.semantic import item_vectors_for
from recommendations.vectors.embedding import user_interests_compute
from users.models import Activity, ActivityKind, ActivityVector

# The person's latest items: where their taste is going now (behaviour and semantic features).
RECENT_ITEMS = 10


# Stars from which a rating says "I liked it" (the behaviour-liked feature).
LIKED_RATING = 4.0


# Their own words read for the text-match feature and the explanations.
TEXTS_READ = 200


@dataclass(frozen=True)
class PersonState:
    """Read once per request (or per training person); its readers never change it."""

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
    # Their newest activity with another item than the newest's: the gap between their last two
    # items is the pace of their sequence (the re-ranker's hours_between_last feature).
    previous_moment: datetime | None = None


def _before(as_of: datetime | None) -> Q:
    return Q() if as_of is None else Q(created_at__lt=as_of)


ItemActivityRow = tuple[int, str, float | None, datetime]  # (item, kind, rating, created_at)


def _history(rows: list[ItemActivityRow]) -> tuple[dict[int, float], dict[int, tuple[str, float | None]]]:
    """Their items, most recent first, and the strongest evidence of each; an item they
    dismissed (and anything older about it) is left out."""
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
    return history, evidence


def _liked(evidence: dict[int, tuple[str, float | None]]) -> dict[int, float]:
    return {
        item_id: 1.0
        for item_id, (kind, rating) in evidence.items()
        if (rating is not None and rating >= LIKED_RATING)
        or (rating is None and kind in (ActivityKind.PURCHASE, ActivityKind.ADD_TO_CART))
    }


def _interests(*, user_id: int, model_name: str, as_of: datetime | None) -> list[np.ndarray]:
    """Their stored interest vectors now; as of a past moment, built in memory from then."""
    if as_of is None:
        return [
            vector_from_bytes(raw)
            for raw in UserInterest.objects.filter(user_id=user_id, embedding_model=model_name)
            .order_by("cluster")
            .annotate(raw=VectorBytes("embedding"))
            .values_list("raw", flat=True)
        ]
    history = interaction_history()
    if history is None:
        interests = user_interests_compute(user_id=user_id, model_name=model_name, as_of=as_of)
    else:  # as of a past moment inside interactions_snapshot(): from memory
        interests = user_interests_compute(
            user_id=user_id,
            model_name=model_name,
            as_of=as_of,
            remembered=history.person_activities(
                user_id=user_id, as_of=as_of, limit=recommender_settings().interest_history
            ),
            item_vectors_of=lambda item_ids: item_vectors_for(item_ids=item_ids, model_name=model_name),
        )
    return [interest.vector for interest in interests]


def _texts(*, user_id: int, model_name: str, as_of: datetime | None) -> list[tuple[str, np.ndarray]]:
    snapshot = interaction_history() if as_of is not None else None
    if snapshot is not None and as_of is not None and not snapshot.person_wrote_before(user_id=user_id, as_of=as_of):
        return []  # nothing they wrote before as_of: no vector to read
    return [
        (text, vector_from_bytes(raw))
        for text, raw in ActivityVector.objects.filter(
            Q() if as_of is None else Q(activity__created_at__lt=as_of),
            activity__user_id=user_id,
            model_name=model_name,
        )
        .order_by("-activity__created_at")
        .annotate(raw=VectorBytes("embedding"))
        .values_list("activity__text", "raw")[:TEXTS_READ]
        # Vectors are written for activities with text only (activity_embeddings_refresh): drops nothing.
        if text is not None
    ]


def person_state(*, user_id: int, model_name: str, as_of: datetime | None = None) -> PersonState:
    """The person now (as_of None) or as they were just before as_of. Three or four queries."""
    config = recommender_settings()
    # All their item activities in one read (a few thousand rows for the heaviest MovieLens
    # person): everything they ever touched is "seen", not only the recent items the behaviour
    # source reads, so an old purchase never comes back as a recommendation. As of a past
    # moment inside interactions_snapshot() (training, offline replay), read from memory.
    snapshot = interaction_history() if as_of is not None else None
    every: list[ItemActivityRow] = (
        snapshot.person_item_rows(user_id=user_id, as_of=as_of)
        if snapshot is not None and as_of is not None
        else list(
            Activity.objects.filter(_before(as_of), user_id=user_id, item__isnull=False)
            .order_by("-created_at", "-id")
            .values_list("item_id", "kind", "rating", "created_at")
        )
    )
    excluded_kinds = set(config.exclude_seen_kinds)
    seen = {row[0] for row in every if row[1] in excluded_kinds}
    rows = every[: config.history_items]
    history, evidence = _history(rows)
    return PersonState(
        user_id=user_id,
        history=history,
        recent={item_id: 1.0 for item_id in list(history)[:RECENT_ITEMS]},
        liked=_liked(evidence),
        evidence=evidence,
        seen=seen,
        interests=_interests(user_id=user_id, model_name=model_name, as_of=as_of),
        texts=_texts(user_id=user_id, model_name=model_name, as_of=as_of),
        moment=rows[0][3] if rows else None,
        as_of=as_of,
        previous_moment=next((row[3] for row in rows if row[0] != rows[0][0]), None),
    )
