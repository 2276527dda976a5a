"""How a person's activities become interest vectors. Numbers in, numbers out: no database.

Each activity contributes a unit vector (the item's vector, or the vector of what they wrote)
with a weight by kind and rating, halved every half-life. Positive evidence pulls the interest
towards it; negative evidence (a low rating, a dismissal) pushes it away. People with several
distinct tastes get one vector per theme (spherical k-means over the positive evidence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

# Weight of one event by kind: buying says more than looking. Text kinds count as the words
# themselves (a search or a question says what is wanted right now).
KIND_WEIGHTS = {
    "purchase": 3.0,
    "add_to_cart": 2.0,
    "review": 2.0,
    "comment": 1.5,
    "tag": 1.5,
    "search": 1.5,
    "chat": 1.0,
    "click": 1.0,
    "view": 0.5,
    "rating": 1.0,
    "dismiss": -1.0,
}
# Share of all positive weight a theme needs to get a vector of its own.
MIN_CLUSTER_SHARE = 0.2
MIN_EVENTS_PER_CLUSTER = 8


def rating_factor(rating: float | None) -> float:
    """Stars to a signed factor: 5 -> +2, 4 -> +1.5, 3 -> +0.5, 2 -> -0.5, 1 or less -> -1."""
    if rating is None:
        return 1.0
    if rating >= 4.5:
        return 2.0
    if rating >= 4.0:
        return 1.5
    if rating >= 3.0:
        return 0.5
    if rating >= 2.0:
        return -0.5
    return -1.0


def event_weight(*, kind: str, rating: float | None, age_days: float, half_life_days: float) -> float:
    base = KIND_WEIGHTS.get(kind, 0.0)
    if kind in ("rating", "review"):
        base = abs(base) * rating_factor(rating)
    return base * 0.5 ** (max(age_days, 0.0) / half_life_days)


@dataclass(frozen=True)
class Evidence:
    vector: np.ndarray
    kind: str
    rating: float | None
    created_at: datetime


@dataclass(frozen=True)
class Interest:
    vector: np.ndarray
    n_events: int
    weight: float  # share of the positive evidence behind it


def _normalise(vector: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-6 else None


def _spherical_kmeans(vectors: np.ndarray, weights: np.ndarray, k: int, iterations: int = 20) -> np.ndarray:
    """Cluster labels for unit vectors. Deterministic: seeds are picked farthest-first."""
    seeds = [int(np.argmax(weights))]
    for _ in range(1, k):
        similarity = np.max(vectors @ vectors[seeds].T, axis=1)
        seeds.append(int(np.argmin(similarity)))
    centres = vectors[seeds]
    labels = np.zeros(len(vectors), dtype=int)
    for _ in range(iterations):
        labels = np.argmax(vectors @ centres.T, axis=1)
        updated = []
        for cluster in range(k):
            members = labels == cluster
            centre = _normalise((vectors[members] * weights[members, None]).sum(axis=0)) if members.any() else None
            updated.append(centre if centre is not None else centres[cluster])
        stacked = np.stack(updated)
        if np.allclose(stacked, centres):
            break
        centres = stacked
    return labels


def interests_build(
    evidence: list[Evidence], *, now: datetime, half_life_days: float, max_clusters: int
) -> list[Interest]:
    """The person's interest vectors, strongest first; empty when the evidence cancels out."""
    if not evidence:
        return []
    vectors = np.stack([item.vector for item in evidence]).astype(np.float64)
    # Age counts from the person's newest event, not from now: only relative recency changes
    # the direction of the vector, and someone back after a year must not fade to nothing
    # (weights of old events underflow to zero when counted from today).
    newest = min(now, max(item.created_at for item in evidence))
    weights = np.array(
        [
            event_weight(
                kind=item.kind,
                rating=item.rating,
                age_days=(newest - item.created_at).total_seconds() / 86_400,
                half_life_days=half_life_days,
            )
            for item in evidence
        ],
        dtype=np.float64,
    )
    overall = _normalise((vectors * weights[:, None]).sum(axis=0))
    if overall is None:
        return []
    positive = weights > 0
    negative_pull = (vectors[~positive] * weights[~positive, None]).sum(axis=0)
    total_positive = float(weights[positive].sum())
    interests = [Interest(overall.astype(np.float32), len(evidence), 1.0)]

    k = min(max_clusters, int(positive.sum()) // MIN_EVENTS_PER_CLUSTER)
    if k >= 2:
        labels = _spherical_kmeans(vectors[positive], weights[positive], k)
        themes = []
        for cluster in range(k):
            members = labels == cluster
            share = float(weights[positive][members].sum()) / total_positive
            if share < MIN_CLUSTER_SHARE or members.sum() < MIN_EVENTS_PER_CLUSTER:
                continue
            centre = _normalise(
                (vectors[positive][members] * weights[positive][members, None]).sum(axis=0) + negative_pull * share
            )
            if centre is not None:
                themes.append(Interest(centre.astype(np.float32), int(members.sum()), share))
        # One theme only means the tastes are not diverse: the overall vector says it all.
        if len(themes) >= 2:
            interests += sorted(themes, key=lambda theme: -theme.weight)
    return interests
