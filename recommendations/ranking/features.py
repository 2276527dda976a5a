"""Features of (person, candidate) pairs for the re-ranker, computed in batches (no N+1).

The same function serves requests and builds the re-ranker's training rows, so a model never
sees features computed differently from the ones it learned on. A missing value is NaN (the
gradient-boosted ranker handles it; the logistic one reads 0 with the feature's own flag).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db.models import Count, Q
from django.utils import timezone

from catalog.models import Item
from recommendations.retrieval.candidates import Candidate, item_vectors_with_recent
from recommendations.retrieval.filters import id_array
from recommendations.retrieval.history import interaction_history
from recommendations.retrieval.person import PersonState
from recommendations.retrieval.popular import ItemPopularity, item_popularity
from users.models import BEHAVIOUR_KINDS, Activity

# Version the list when it changes: a stored ranker reads features by these names.
FEATURES = (
    "behaviour",  # sum of behaviour-model weights over the person's items
    "behaviour_recent",  # the same over their latest items only
    "behaviour_liked",  # the same over the items they clearly liked (4+ stars, bought)
    "behaviour_rank",  # rank in the behaviour source / source size (1 = not proposed)
    "behaviour_share",  # behaviour / the best behaviour score among the candidates
    "semantic_best",  # best cosine to any interest vector
    "semantic_main",  # cosine to the main interest vector
    "semantic_recent_max",  # best cosine to the vectors of their latest items
    "semantic_recent_mean",  # mean cosine to those
    "text_match",  # best cosine to what they wrote (reviews, searches, questions, tags)
    "semantic_rank",  # rank in the semantic source / source size (1 = not proposed)
    "popularity",  # log(1 + distinct people)
    "trending",  # log(1 + 10,000 x share of the recency-weighted interactions)
    "item_age_years",  # years between the item's first interaction and now (or as_of)
    "category_share",  # share of the person's items in the candidate's category
    "tag_share_mean",  # mean over the candidate's tags of the person's share of that tag
    "tag_share_max",
    "in_popular",
    "in_fresh",
    "history_size",  # log(1 + the person's items)
    "price_gap",  # |log price - mean log price of the person's items| (NaN without prices)
    # The order of the person's items: where they are now (#14 item 3).
    "behaviour_last",  # behaviour-model weight from their newest item to the candidate
    "semantic_last",  # cosine to their newest item's vector
    "semantic_last3_mean",  # mean cosine to their newest LAST_FEW items' vectors
    # The time since their last item as the gap between their last two: a time "since now" cannot be
    # learned from the past without reading the moment of the very interaction it must predict
    # (a training cut-off is that moment), and an offline replay asks just after the last one.
    "hours_between_last",  # log(1 + hours between their newest two items)
    # How much evidence the item has, so a model learns when to trust text instead (#14 item 3).
    "item_interactions",  # log(1 + interactions with it), as of
    "item_texts",  # log(1 + activities with text about it: reviews, comments, tags), as of
    "item_unproven",  # 1: nobody has interacted with it (yet, or before as_of)
    # Text where behaviour knows nothing: lets the linear ranker weigh text apart for such items.
    "unproven_semantic_best",  # semantic_best where item_unproven, else 0
    "unproven_semantic_last3",  # semantic_last3_mean where item_unproven, else 0
    # The item's year (attributes.year: a film's release, a product's model year; NaN without one):
    # catalog facts that say something of an item no one has chosen yet.
    "release_age_years",  # the year of now (or as_of) - the item's year
    "year_gap",  # |the item's year - the mean year of the person's items|
)
INDEX = {name: position for position, name in enumerate(FEATURES)}

# The person's newest items the sequence features read (semantic_last3_mean).
LAST_FEW = 3


def _shares(values: list[str]) -> dict[str, float]:
    counts: dict[str, float] = {}
    for value in values:
        counts[value] = counts.get(value, 0.0) + 1.0
    total = sum(counts.values()) or 1.0
    return {value: count / total for value, count in counts.items()}


# An item nobody has chosen (yet, or before as_of).
_UNCHOSEN = ItemPopularity(people=0.0, trending_share=0.0, first_interaction_at=None)


@dataclass(frozen=True)
class _Profile:
    """What the person's own items say of their taste: the category, tag, price and year features."""

    category_shares: dict[str, float]
    tag_shares: dict[str, float]
    mean_log_price: float | None
    mean_year: float | None = None


def _profile(*, state: PersonState, read: dict[int, dict]) -> _Profile:
    categories, tags, prices, years = [], [], [], []
    for category, item_tags, price, year in (
        (values["category"], values["tags"], values["price"], values["year"])
        for item_id, values in read.items()
        if item_id in state.history
    ):
        categories.append(category)
        tags.extend(item_tags)
        if price is not None and price > 0:
            prices.append(math.log(float(price)))
        if year is not None:
            years.append(year)
    return _Profile(
        category_shares=_shares(categories),
        tag_shares=_shares(tags),
        mean_log_price=float(np.mean(prices)) if prices else None,
        mean_year=float(np.mean(years)) if years else None,
    )


def _year(value: object) -> float | None:
    """attributes.year as a number (a bundle may hold anything there: not a number reads as none)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        year = float(value)
    except ValueError:
        return None
    return year if math.isfinite(year) else None


def _similarities_fill(
    matrix: np.ndarray,
    *,
    ids: list[int],
    vectors: dict[int, np.ndarray],
    state: PersonState,
    recent_vectors: np.ndarray | None,
) -> None:
    """Cosines of every candidate with a vector against the interest, recent-item and text
    vectors: three matrix products for the whole batch, not three per candidate."""
    interests = np.stack(state.interests) if state.interests else None
    texts = np.stack([vector for _text, vector in state.texts]) if state.texts else None
    with_vectors = [row for row, item_id in enumerate(ids) if item_id in vectors]
    if not with_vectors:
        return
    stacked = np.stack([vectors[ids[row]] for row in with_vectors])
    if interests is not None:
        similarities = stacked @ interests.T
        matrix[with_vectors, INDEX["semantic_best"]] = similarities.max(axis=1)
        matrix[with_vectors, INDEX["semantic_main"]] = similarities[:, 0]
    if recent_vectors is not None:
        similarities = stacked @ recent_vectors.T
        matrix[with_vectors, INDEX["semantic_recent_max"]] = similarities.max(axis=1)
        matrix[with_vectors, INDEX["semantic_recent_mean"]] = similarities.mean(axis=1)
    if texts is not None:
        matrix[with_vectors, INDEX["text_match"]] = (stacked @ texts.T).max(axis=1)
    newest = [vectors[item_id] for item_id in list(state.history)[:LAST_FEW] if item_id in vectors]
    if newest:
        similarities = stacked @ np.stack(newest).T
        if next(iter(state.history)) in vectors:
            matrix[with_vectors, INDEX["semantic_last"]] = similarities[:, 0]
        matrix[with_vectors, INDEX["semantic_last3_mean"]] = similarities.mean(axis=1)


def _item_fill(values: np.ndarray, *, item: dict | None, profile: _Profile, this_year: float) -> None:
    """The features of the candidate's own fields against the person's profile."""
    if item is None:
        return
    if item["year"] is not None:
        values[INDEX["release_age_years"]] = this_year - item["year"]
        if profile.mean_year is not None:
            values[INDEX["year_gap"]] = abs(item["year"] - profile.mean_year)
    values[INDEX["category_share"]] = profile.category_shares.get(item["category"], 0.0)
    item_tag_shares = [profile.tag_shares.get(tag, 0.0) for tag in item["tags"]] or [0.0]
    values[INDEX["tag_share_mean"]] = sum(item_tag_shares) / len(item_tag_shares)
    values[INDEX["tag_share_max"]] = max(item_tag_shares)
    if profile.mean_log_price is not None and item["price"] is not None and item["price"] > 0:
        values[INDEX["price_gap"]] = abs(math.log(float(item["price"])) - profile.mean_log_price)


def _item_evidence(*, item_ids: list[int], as_of: datetime | None) -> dict[int, tuple[int, int]]:
    """item -> (interactions, activities with text about it), before as_of (None: now). One query
    over the (item, kind) index; the texts are counted from the activities themselves, so the count
    does not wait for any derived vector. Inside interactions_snapshot(), read from memory."""
    if as_of is not None and (history := interaction_history()) is not None:
        return history.evidence(item_ids=item_ids, as_of=as_of)
    rows = (
        Activity.objects.filter(Q() if as_of is None else Q(created_at__lt=as_of), item_id__in=id_array(item_ids))
        .order_by()
        .values("item_id")
        .annotate(
            interactions=Count("id", filter=Q(kind__in=sorted(BEHAVIOUR_KINDS))),
            texts=Count("id", filter=Q(text__isnull=False) & ~Q(text="")),
        )
        .values_list("item_id", "interactions", "texts")
    )
    return {item_id: (interactions, texts) for item_id, interactions, texts in rows}


def features_compute(
    *,
    state: PersonState,
    candidates: dict[int, Candidate],
    model_name: str,
    size: int,
    hidden_items: frozenset[int] = frozenset(),
) -> dict[int, dict]:
    """Fill candidate.features (FEATURES order), .semantic and .popularity; returns the
    candidates' item fields read (category, tags, price) for the business rules. Five queries.

    hidden_items: items whose interactions and texts are treated as not there (the re-ranker's
    training makes some items cold on purpose, as protocol P2 does): their popularity, trend, age
    and evidence read as an item nobody has chosen or written about yet."""
    ids = list(candidates)
    if not ids:
        return {}
    matrix = np.full((len(ids), len(FEATURES)), np.nan, dtype=np.float64)
    vectors, recent_vectors = item_vectors_with_recent(state=state, item_ids=ids, model_name=model_name)
    popularity = item_popularity(item_ids=ids, as_of=state.as_of)
    evidence = _item_evidence(item_ids=ids, as_of=state.as_of)
    rows = Item.objects.filter(id__in=id_array(set(ids) | set(state.history))).values_list(
        "id", "category", "tags", "price", "attributes__year"
    )
    read = {
        item_id: {"category": category, "tags": tags, "price": price, "year": _year(year)}
        for item_id, category, tags, price, year in rows
    }
    fields = {item_id: read[item_id] for item_id in ids if item_id in read}
    profile = _profile(state=state, read=read)
    moment = state.as_of or timezone.now()
    reference = moment.timestamp()
    this_year = moment.year + (moment.timetuple().tm_yday - 1) / 365.25
    best_behaviour = max((candidate.behaviour for candidate in candidates.values()), default=0.0) or 1.0
    history_size = math.log1p(len(state.history))
    hours_between_last = (
        math.log1p(max(0.0, (state.moment - state.previous_moment).total_seconds()) / 3_600)
        if state.moment is not None and state.previous_moment is not None
        else math.nan
    )
    _similarities_fill(matrix, ids=ids, vectors=vectors, state=state, recent_vectors=recent_vectors)

    for row, item_id in enumerate(ids):
        candidate = candidates[item_id]
        values = matrix[row]
        values[INDEX["behaviour"]] = candidate.behaviour
        values[INDEX["behaviour_recent"]] = candidate.behaviour_recent
        values[INDEX["behaviour_liked"]] = candidate.behaviour_liked
        values[INDEX["behaviour_rank"]] = candidate.sources.get("behaviour", size) / size
        values[INDEX["behaviour_share"]] = candidate.behaviour / best_behaviour
        values[INDEX["semantic_rank"]] = candidate.sources.get("semantic", size) / size
        if not math.isnan(values[INDEX["semantic_best"]]):
            candidate.semantic = float(values[INDEX["semantic_best"]])
        hidden = item_id in hidden_items
        chosen = _UNCHOSEN if hidden else popularity.get(item_id, _UNCHOSEN)
        values[INDEX["popularity"]] = candidate.popularity = math.log1p(chosen.people)
        values[INDEX["trending"]] = math.log1p(10_000 * chosen.trending_share)
        if chosen.first_interaction_at is not None:
            values[INDEX["item_age_years"]] = (reference - chosen.first_interaction_at) / (365.25 * 86_400)
        _item_fill(values, item=fields.get(item_id), profile=profile, this_year=this_year)
        # The popular source ranks by the statistics of now, which hiding cannot reach: a hidden
        # item reads as the popular source sees an item nobody has chosen, never proposed.
        values[INDEX["in_popular"]] = float("popular" in candidate.sources and not hidden)
        values[INDEX["in_fresh"]] = float("fresh" in candidate.sources)
        values[INDEX["history_size"]] = history_size
        values[INDEX["behaviour_last"]] = candidate.behaviour_last
        values[INDEX["hours_between_last"]] = hours_between_last
        interactions, texts = (0, 0) if hidden else evidence.get(item_id, (0, 0))
        values[INDEX["item_interactions"]] = math.log1p(interactions)
        values[INDEX["item_texts"]] = math.log1p(texts)
        values[INDEX["item_unproven"]] = float(chosen.people == 0)
        candidate.features = values
    # Whole columns at once: np.nan_to_num per value cost 12% of the re-ranker's training time.
    unproven = matrix[:, INDEX["item_unproven"]]
    matrix[:, INDEX["unproven_semantic_best"]] = unproven * np.nan_to_num(matrix[:, INDEX["semantic_best"]])
    matrix[:, INDEX["unproven_semantic_last3"]] = unproven * np.nan_to_num(matrix[:, INDEX["semantic_last3_mean"]])
    return fields
