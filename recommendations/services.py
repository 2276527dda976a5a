"""The recommendation service: the one code path the API, the pages and the evaluation call.

recommend_for_user / recommend_for_text / similar_items each gather candidates from several
sources (behaviour, semantic vectors, popularity, fresh items), score them, apply the business
rules (no inactive or already-seen items, the caller's filters, a per-category cap, stable
pagination), explain every result from its evidence and log what was shown.

Scoring: a trained re-ranker when one is active (the ranker issue); until then a documented
blend, and the answer says so (`ranker="blend"`, `fallback=True`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import transaction

from catalog.models import Item
from core.exceptions import ApplicationError
from core.text import text_clean
from recommendations import selectors
from recommendations.models import (
    ItemNeighbour,
    Recommendation,
    RecommendationContext,
    RecommendedItem,
    UserInterest,
)
from recommendations.selectors import ItemFilters
from users.models import Activity, ActivityKind, ActivityVector, User

logger = logging.getLogger(__name__)

SOURCES = ("behaviour", "semantic", "popular", "fresh")
SNIPPET_LENGTH = 80
# A person's own words are quoted as the reason only when they are this close to the item.
QUOTE_MIN_SIMILARITY = 0.35
VERBS = {
    ActivityKind.PURCHASE: "you bought",
    ActivityKind.RATING: "you rated",
    ActivityKind.REVIEW: "you reviewed",
    ActivityKind.ADD_TO_CART: "you added to your cart",
    ActivityKind.COMMENT: "you commented on",
    ActivityKind.TAG: "you tagged",
}


@dataclass
class Result:
    item: Item
    score: float
    sources: list[str]
    reason: str


@dataclass
class Answer:
    results: list[Result]
    ranker: str
    fallback: bool
    recommendation_id: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    item_id: int
    sources: dict[str, int] = field(default_factory=dict)  # source -> rank (0 = its best)
    behaviour: float = 0.0
    semantic: float = 0.0
    popularity: float = 0.0
    score: float = 0.0


def _serving_model() -> str:
    config = settings.RECOMMENDER
    return config["SERVING_MODEL"] or config["ENCODER_MODEL"]


def _merge(candidates: dict[int, _Candidate], source: str, ranked: list[tuple[int, float]]) -> None:
    for rank, (item_id, _score) in enumerate(ranked):
        candidates.setdefault(item_id, _Candidate(item_id)).sources[source] = rank


def _history(user: User) -> tuple[dict[int, float], dict[int, tuple[str, float | None]], set[int]]:
    """(item weights for the behaviour source, strongest activity per item, items to exclude)."""
    rows = (
        Activity.objects.filter(user=user, item__isnull=False)
        .order_by("-created_at", "-id")
        .values_list("item_id", "kind", "rating")[: settings.RECOMMENDER["HISTORY_ITEMS"]]
    )
    # Everything the person ever touched is "seen", not only the recent items the behaviour
    # source reads: an old purchase must not come back as a recommendation.
    seen = set(Activity.objects.filter(user=user, item__isnull=False).values_list("item_id", flat=True).distinct())
    weights: dict[int, float] = {}
    evidence: dict[int, tuple[str, float | None]] = {}
    for item_id, kind, rating in rows:
        if kind == ActivityKind.DISMISS:
            weights.pop(item_id, None)
            continue
        # Every interaction counts once (the behaviour model was learned from binary rows).
        weights[item_id] = 1.0
        evidence.setdefault(item_id, (kind, rating))
    return weights, evidence, seen


def _blend(candidates: list[_Candidate]) -> None:
    config = settings.RECOMMENDER
    best_behaviour = max((candidate.behaviour for candidate in candidates), default=0.0) or 1.0
    best_popularity = max((candidate.popularity for candidate in candidates), default=0.0) or 1.0
    for candidate in candidates:
        candidate.score = (
            candidate.behaviour / best_behaviour
            + config["BLEND_SEMANTIC"] * candidate.semantic
            + config["BLEND_POPULARITY"] * candidate.popularity / best_popularity
        )


def _apply_rules(candidates: list[_Candidate], items: dict[int, Item], *, offset: int, k: int) -> list[_Candidate]:
    """Order by score (ties by id: stable pages), cap results per category, cut the page."""
    ordered = sorted(candidates, key=lambda candidate: (-candidate.score, candidate.item_id))
    cap = settings.RECOMMENDER["MAX_PER_CATEGORY"]
    if cap:
        per_category: dict[str, int] = {}
        capped = []
        for candidate in ordered:
            category = items[candidate.item_id].category
            per_category[category] = per_category.get(category, 0) + 1
            if not category or per_category[category] <= cap:
                capped.append(candidate)
        ordered = capped
    return ordered[offset : offset + k]


def _features(candidates: dict[int, _Candidate], *, query_vectors: list[np.ndarray], model_name: str) -> None:
    """Semantic similarity and popularity for every candidate, in two queries (no N+1)."""
    ids = list(candidates)
    if query_vectors:
        vectors = selectors.item_vectors_for(item_ids=ids, model_name=model_name)
        queries = np.stack(query_vectors)
        for item_id, vector in vectors.items():
            candidates[item_id].semantic = float(np.max(queries @ vector))
    for item_id, (popularity, _trending) in selectors.item_stats_for(item_ids=ids).items():
        candidates[item_id].popularity = math.log1p(popularity)


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_LENGTH else text[: SNIPPET_LENGTH - 1].rstrip() + "…"


def _reasons_for_user(
    user: User,
    page: list[_Candidate],
    items: dict[int, Item],
    history: dict[int, float],
    evidence: dict,
    model_name: str,
) -> dict[int, str]:
    reasons: dict[int, str] = {}
    page_ids = [candidate.item_id for candidate in page]
    # Behaviour: the person's item that contributes most to each result.
    strongest: dict[int, tuple[float, int]] = {}
    if history:
        links = ItemNeighbour.objects.filter(
            model__is_active=True, item_id__in=list(history), neighbour_id__in=page_ids
        ).values_list("neighbour_id", "item_id", "weight")
        for neighbour_id, item_id, weight in links:
            if weight > strongest.get(neighbour_id, (0.0, 0))[0]:
                strongest[neighbour_id] = (weight, item_id)
    anchors = Item.objects.in_bulk({item_id for _weight, item_id in strongest.values()})
    # Text: the person's own words closest to each result.
    texts = list(
        ActivityVector.objects.filter(activity__user=user, model_name=model_name)
        .order_by("-activity__created_at")
        .values_list("activity__text", "embedding")[:200]
    )
    item_vectors = selectors.item_vectors_for(item_ids=page_ids, model_name=model_name) if texts else {}
    text_matrix = np.stack([np.asarray(vector) for _text, vector in texts]) if texts else None
    for candidate in page:
        item = items[candidate.item_id]
        if text_matrix is not None and candidate.item_id in item_vectors:
            similarities = text_matrix @ item_vectors[candidate.item_id]
            best = int(np.argmax(similarities))
            if similarities[best] >= QUOTE_MIN_SIMILARITY and ("semantic" in candidate.sources or not strongest):
                reasons[candidate.item_id] = f'you wrote: "{_snippet(texts[best][0])}"'
                continue
        if candidate.item_id in strongest:
            anchor = anchors[strongest[candidate.item_id][1]]
            kind, rating = evidence.get(anchor.id, ("view", None))
            verb = VERBS.get(kind, "you looked at")
            stars = f" {rating:g} stars" if kind == ActivityKind.RATING and rating is not None else ""
            reasons[candidate.item_id] = f"because {verb} {anchor.title}{stars}"
        elif "semantic" in candidate.sources:
            reasons[candidate.item_id] = "close to what you are interested in"
        elif "popular" in candidate.sources:
            reasons[candidate.item_id] = f"trending in {item.category}" if item.category else "popular right now"
        else:
            reasons[candidate.item_id] = f"new in {item.category}" if item.category else "new"
    return reasons


def _log(
    *, context: str, user: User | None, results: list[Result], query_text: str = "", anchor: Item | None = None
) -> str:
    with transaction.atomic():
        recommendation = Recommendation.objects.create(
            user=user, context=context, query_text=query_text, anchor_item=anchor
        )
        RecommendedItem.objects.bulk_create(
            RecommendedItem(
                recommendation=recommendation,
                item=result.item,
                position=position,
                score=result.score,
                sources=result.sources,
                reason=result.reason,
            )
            for position, result in enumerate(results)
        )
    return str(recommendation.id)


def _answer(page: list[_Candidate], items: dict[int, Item], reasons: dict[int, str], notes: list[str]) -> Answer:
    results = [
        Result(
            item=items[candidate.item_id],
            score=round(candidate.score, 6),
            sources=sorted(candidate.sources, key=candidate.sources.get),
            reason=reasons[candidate.item_id],
        )
        for candidate in page
    ]
    return Answer(results=results, ranker="blend", fallback=True, notes=notes)


def recommend_for_user(
    *,
    user: User,
    k: int = 20,
    offset: int = 0,
    filters: ItemFilters | None = None,
    exclude_seen: bool | None = None,
    sources: tuple[str, ...] = SOURCES,
    log: bool = True,
) -> Answer:
    """What to show this person next, with the reason and source(s) of each result.

    `sources` limits the candidate sources (the evaluation's per-source ablations use it).
    """
    started = time.monotonic()
    config = settings.RECOMMENDER
    filters = filters or ItemFilters()
    exclude_seen = config["EXCLUDE_SEEN"] if exclude_seen is None else exclude_seen
    model_name = _serving_model()
    history, evidence, seen = _history(user)
    if exclude_seen:
        filters = ItemFilters(**{**filters.__dict__, "exclude_ids": frozenset(filters.exclude_ids | seen)})
    interests = [
        np.asarray(vector, dtype=np.float32)
        for vector in UserInterest.objects.filter(user=user, embedding_model=model_name)
        .order_by("cluster")
        .values_list("embedding", flat=True)
    ]
    size = config["CANDIDATES_PER_SOURCE"] + offset + k
    candidates: dict[int, _Candidate] = {}
    behaviour = []
    if "behaviour" in sources:
        behaviour = selectors.behaviour_candidates(history=history, filters=filters, k=size)
        _merge(candidates, "behaviour", behaviour)
    if "semantic" not in sources:
        interests = []
    if interests:
        _merge(
            candidates,
            "semantic",
            selectors.semantic_candidates(vectors=interests, model_name=model_name, filters=filters, k=size),
        )
    if "popular" in sources:
        _merge(
            candidates,
            "popular",
            selectors.popular_candidates(filters=filters, k=size, by=config["POPULAR_BY"]),
        )
    if "fresh" in sources and config["FRESH_CANDIDATES"]:
        _merge(
            candidates,
            "fresh",
            selectors.fresh_candidates(filters=filters, k=config["FRESH_CANDIDATES"], days=config["FRESH_DAYS"]),
        )
    for item_id, score in behaviour:
        candidates[item_id].behaviour = score
    _features(candidates, query_vectors=interests[:1], model_name=model_name)
    _blend(list(candidates.values()))
    items = Item.objects.in_bulk(list(candidates))
    page = _apply_rules(list(candidates.values()), items, offset=offset, k=k)
    reasons = _reasons_for_user(user, page, items, history, evidence, model_name)
    notes = ["no trained ranker is active: results use the documented blend"]
    if not history:
        notes.append("no history yet: popular items and anything you typed")
    answer = _answer(page, items, reasons, notes)
    if log:
        answer.recommendation_id = _log(context=RecommendationContext.USER, user=user, results=answer.results)
    logger.debug(
        "recommended for user=%s n=%d candidates=%d ms=%d",
        user.pk,
        len(page),
        len(candidates),
        (time.monotonic() - started) * 1000,
    )
    return answer


def _text_vector(text: str) -> np.ndarray:
    from recommendations.ml.encoder import get_encoder

    return get_encoder(_serving_model()).encode([text]).vectors[0]


def recommend_for_text(
    *,
    text: str,
    user: User | None = None,
    k: int = 20,
    offset: int = 0,
    filters: ItemFilters | None = None,
    log: bool = True,
) -> Answer:
    """Items that answer a free text (a search, a customer-service question), best first.

    Score: cosine(text, item) + TEXT_POPULARITY x log(1 + people who interacted); with a known
    person, + BLEND_SEMANTIC x cosine(their interest, item) as a gentle personal tilt.
    """
    config = settings.RECOMMENDER
    text = text_clean(text, field="text", max_length=config["MAX_TEXT_LENGTH"])
    if not text:
        raise ApplicationError("text is empty")
    filters = filters or ItemFilters()
    model_name = _serving_model()
    query = _text_vector(text)
    candidates: dict[int, _Candidate] = {}
    size = config["CANDIDATES_PER_SOURCE"] + offset + k
    _merge(
        candidates,
        "semantic",
        selectors.semantic_candidates(vectors=[query], model_name=model_name, filters=filters, k=size),
    )
    _features(candidates, query_vectors=[query], model_name=model_name)
    interest = None
    if user is not None:
        interest = (
            UserInterest.objects.filter(user=user, embedding_model=model_name, cluster=0)
            .values_list("embedding", flat=True)
            .first()
        )
    personal = {}
    if interest is not None:
        vectors = selectors.item_vectors_for(item_ids=list(candidates), model_name=model_name)
        personal = {item_id: float(np.dot(vector, interest)) for item_id, vector in vectors.items()}
    for candidate in candidates.values():
        candidate.score = (
            candidate.semantic
            + config["TEXT_POPULARITY"] * candidate.popularity
            + config["BLEND_SEMANTIC"] * personal.get(candidate.item_id, 0.0)
        )
    items = Item.objects.in_bulk(list(candidates))
    page = _apply_rules(list(candidates.values()), items, offset=offset, k=k)
    reason = f'matches "{_snippet(text)}"'
    reasons = {candidate.item_id: reason for candidate in page}
    notes = ["free-text answers are ranked by meaning and popularity (no trained ranker for text yet)"]
    if user is not None and interest is None:
        notes.append("no interest vector for this person yet: not personalised")
    answer = _answer(page, items, reasons, notes)
    if log:
        answer.recommendation_id = _log(
            context=RecommendationContext.TEXT, user=user, results=answer.results, query_text=text
        )
    return answer


def similar_items(
    *, item: Item, k: int = 20, offset: int = 0, filters: ItemFilters | None = None, log: bool = True
) -> Answer:
    """Items like this one: bought or watched by the same people, or described alike.

    Score: behaviour weight (scaled to the best neighbour) + SIMILAR_SEMANTIC x cosine. An item
    nobody has touched yet still gets answers through its text.
    """
    config = settings.RECOMMENDER
    filters = filters or ItemFilters()
    filters = ItemFilters(**{**filters.__dict__, "exclude_ids": frozenset(filters.exclude_ids | {item.id})})
    model_name = _serving_model()
    size = config["CANDIDATES_PER_SOURCE"] + offset + k
    candidates: dict[int, _Candidate] = {}
    behaviour = selectors.behaviour_candidates(history={item.id: 1.0}, filters=filters, k=size)
    _merge(candidates, "behaviour", behaviour)
    vector = selectors.item_vectors_for(item_ids=[item.id], model_name=model_name).get(item.id)
    query_vectors = [vector] if vector is not None else []
    if query_vectors:
        _merge(
            candidates,
            "semantic",
            selectors.semantic_candidates(vectors=query_vectors, model_name=model_name, filters=filters, k=size),
        )
    for neighbour_id, weight in behaviour:
        candidates[neighbour_id].behaviour = weight
    _features(candidates, query_vectors=query_vectors, model_name=model_name)
    best = max((candidate.behaviour for candidate in candidates.values()), default=0.0) or 1.0
    for candidate in candidates.values():
        candidate.score = candidate.behaviour / best + config["SIMILAR_SEMANTIC"] * candidate.semantic
    items = Item.objects.in_bulk(list(candidates))
    page = _apply_rules(list(candidates.values()), items, offset=offset, k=k)
    reasons = {
        candidate.item_id: (
            f"people who chose {item.title} also chose this"
            if candidate.behaviour > 0
            else f"described like {item.title}"
        )
        for candidate in page
    }
    notes = [] if behaviour else ["no one has interacted with this item yet: similar by description only"]
    answer = _answer(page, items, reasons, notes)
    if log:
        answer.recommendation_id = _log(
            context=RecommendationContext.SIMILAR, user=None, results=answer.results, anchor=item
        )
    return answer
