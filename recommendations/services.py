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
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from catalog.models import Item, Placement
from core.exceptions import ApplicationError
from core.text import text_clean
from core.vector_wire import VectorBytes, vector_from_bytes
from recommendations import precomputed, selectors
from recommendations.candidates import (
    SOURCES,
    Candidate,
    PersonState,
    candidates_gather,
    merge_ranked,
    person_state,
    serving_model,
)
from recommendations.features import FEATURES, features_compute
from recommendations.models import (
    ItemNeighbour,
    PrecomputedList,
    Recommendation,
    RecommendationContext,
    RecommendedItem,
    UserInterest,
)
from recommendations.ranking import RankerError, active_ranker, blend_scores, feature_matrix
from recommendations.selectors import ItemFilters
from users.models import Activity, ActivityKind, User

logger = logging.getLogger(__name__)

DEFAULT_PAGE = 20
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


def _placements(ordered: list[Candidate], pinned: list[int]) -> list[Candidate]:
    """Staff-pinned items first (in their order), then the ranked rest."""
    if not pinned:
        return ordered
    by_id = {candidate.item_id: candidate for candidate in ordered}
    first = [by_id.get(item_id) or Candidate(item_id, sources={"pinned": 0}) for item_id in pinned]
    for candidate in first:
        candidate.sources.setdefault("pinned", 0)
    return first + [candidate for candidate in ordered if candidate.item_id not in set(pinned)]


def _apply_rules(
    candidates: list[Candidate], categories: dict[int, str], *, offset: int, k: int, pinned: list[int] = ()
) -> list[Candidate]:
    """Order by score (ties by id: stable pages), pinned items first, cap results per category,
    cut the page. Exclusions (seen, inactive, banned, the caller's filters) were applied by
    every source's query already."""
    ordered = sorted(candidates, key=lambda candidate: (-candidate.score, candidate.item_id))
    ordered = _placements(ordered, list(pinned))
    cap = settings.RECOMMENDER["MAX_PER_CATEGORY"]
    if cap:
        per_category: dict[str, int] = {}
        capped = []
        for candidate in ordered:
            category = categories.get(candidate.item_id, "")
            per_category[category] = per_category.get(category, 0) + 1
            if not category or per_category[category] <= cap:
                capped.append(candidate)
        ordered = capped
    return ordered[offset : offset + k]


def _pinned(filters: ItemFilters, *, unseen_by: int | None = None) -> list[int]:
    """Items staff pinned that pass the request's filters (one small indexed query); with
    unseen_by, not those that person has seen (when the filters do not already exclude them)."""
    pinned = Item.objects.filter(filters.q(), placement=Placement.PINNED)
    if unseen_by is not None:
        seen = Activity.objects.filter(
            user_id=unseen_by, item_id=OuterRef("id"), kind__in=settings.RECOMMENDER["EXCLUDE_SEEN_KINDS"]
        )
        pinned = pinned.exclude(Exists(seen))
    return list(pinned.order_by("id").values_list("id", flat=True)[:20])


def _categories(candidates: dict[int, Candidate]) -> dict[int, str]:
    if not settings.RECOMMENDER["MAX_PER_CATEGORY"]:
        return {}
    return dict(Item.objects.filter(id__in=selectors.id_array(candidates)).values_list("id", "category"))


def _features(candidates: dict[int, Candidate], *, query_vectors: list[np.ndarray], model_name: str) -> None:
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
    state: PersonState, page: list[Candidate], items: dict[int, Item], model_name: str
) -> dict[int, str]:
    """The evidence behind each result: their own words, the item of theirs that led to it, or
    the trend it belongs to."""
    reasons: dict[int, str] = {}
    page_ids = [candidate.item_id for candidate in page]
    # Behaviour: the person's item that contributes most to each result.
    strongest: dict[int, tuple[float, int]] = {}
    if state.history:
        links = ItemNeighbour.objects.filter(
            model__is_active=True, item_id__in=selectors.id_array(state.history), neighbour_id__in=page_ids
        ).values_list("neighbour_id", "item_id", "weight")
        for neighbour_id, item_id, weight in links:
            if weight > strongest.get(neighbour_id, (0.0, 0))[0]:
                strongest[neighbour_id] = (weight, item_id)
    anchors = Item.objects.in_bulk({item_id for _weight, item_id in strongest.values()})
    # Text: the person's own words closest to each result.
    texts = state.texts
    item_vectors = selectors.item_vectors_for(item_ids=page_ids, model_name=model_name) if texts else {}
    text_matrix = np.stack([vector for _text, vector in texts]) if texts else None
    for candidate in page:
        item = items[candidate.item_id]
        if "pinned" in candidate.sources:
            reasons[candidate.item_id] = "featured"
            continue
        if text_matrix is not None and candidate.item_id in item_vectors:
            similarities = text_matrix @ item_vectors[candidate.item_id]
            best = int(np.argmax(similarities))
            if similarities[best] >= QUOTE_MIN_SIMILARITY and ("semantic" in candidate.sources or not strongest):
                reasons[candidate.item_id] = f'you wrote: "{_snippet(texts[best][0])}"'
                continue
        if candidate.item_id in strongest:
            anchor = anchors[strongest[candidate.item_id][1]]
            kind, rating = state.evidence.get(anchor.id, ("view", None))
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


def _answer(
    page: list[Candidate],
    items: dict[int, Item],
    reasons: dict[int, str],
    notes: list[str],
    *,
    ranker: str = "blend",
    fallback: bool = True,
) -> Answer:
    results = [
        Result(
            item=items[candidate.item_id],
            score=round(candidate.score, 6),
            sources=sorted(candidate.sources, key=candidate.sources.get),
            reason=reasons[candidate.item_id],
        )
        for candidate in page
    ]
    return Answer(results=results, ranker=ranker, fallback=fallback, notes=notes)


def _score(candidates: list[Candidate], *, scoring: str, sources: tuple[str, ...]) -> tuple[str, bool, list[str]]:
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


def _ranked_for_user(
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
        categories = _categories(candidates)
    ranker, fallback, notes = _score(list(candidates.values()), scoring=scoring, sources=sources)
    if not state.history:
        notes.append("no history yet: popular items and anything you typed")
    ordered = sorted(candidates.values(), key=lambda candidate: (-candidate.score, candidate.item_id))
    return ordered, categories, ranker, fallback, notes


def precomputed_list_refresh(*, user_id: int, signature: precomputed.ListSignature | None = None) -> PrecomputedList:
    """Compute the person's ranked list as a request with no filters would, and keep it
    (recommendations.precomputed). The worker calls it after each of their activities; callers
    check first that lists are on (RECOMMENDER_PRECOMPUTED_SIZE)."""
    config = settings.RECOMMENDER
    started = timezone.now()
    signature = signature or precomputed.list_signature(user_id=user_id)
    model_name = serving_model()
    state = person_state(user_id=user_id, model_name=model_name)
    filters = ItemFilters().excluding(state.seen) if config["EXCLUDE_SEEN"] else ItemFilters()
    ordered, _categories_read, ranker, fallback, notes = _ranked_for_user(
        state=state,
        filters=filters,
        size=config["CANDIDATES_PER_SOURCE"] + DEFAULT_PAGE,
        model_name=model_name,
        sources=SOURCES,
        scoring="auto",
    )
    kept = ordered[: config["PRECOMPUTED_SIZE"]]
    items = Item.objects.in_bulk([candidate.item_id for candidate in kept])
    kept = [candidate for candidate in kept if candidate.item_id in items]
    reasons = _reasons_for_user(state, kept, items, model_name)
    return precomputed.list_store(
        user_id=user_id,
        model_name=model_name,
        signature=signature,
        computed_at=started,
        ordered=kept,
        reasons=reasons,
        ranker=ranker,
        fallback=fallback,
        notes=notes,
        complete=len(kept) == len(ordered),
    )


def precomputed_list_refresh_if_kept(*, user_id: int) -> bool:
    """Recompute the person's list if one is kept (they asked before): people who never ask
    for recommendations cost the worker nothing."""
    if not settings.RECOMMENDER["PRECOMPUTED_SIZE"]:
        return False
    if not PrecomputedList.objects.filter(user_id=user_id).exists():
        return False
    precomputed_list_refresh(user_id=user_id)
    return True


def _answer_from_list(*, user: User, filters: ItemFilters, offset: int, k: int) -> Answer | None:
    """The page from the person's kept list (computed now if missing or stale); None when the
    filters leave too few of its items and the list was cut (a live computation must search)."""
    signature = precomputed.list_signature(user_id=user.pk)
    row = precomputed.list_read(user_id=user.pk, model_name=serving_model(), signature=signature)
    if row is None:
        row = precomputed_list_refresh(user_id=user.pk, signature=signature)
    candidates, categories = precomputed.list_candidates(row, filters)
    # The list left out what the person had seen when it was computed (nothing since: the
    # signature matched); pinned items are read now, so they are checked now.
    unseen_by = user.pk if settings.RECOMMENDER["EXCLUDE_SEEN"] else None
    page = _apply_rules(candidates, categories, offset=offset, k=k, pinned=_pinned(filters, unseen_by=unseen_by))
    if len(page) < k and not row.complete:
        return None
    items = Item.objects.in_bulk([candidate.item_id for candidate in page])
    kept_reasons = dict(zip(row.item_ids, row.reasons, strict=True))
    reasons = {
        candidate.item_id: "featured" if "pinned" in candidate.sources else kept_reasons[candidate.item_id]
        for candidate in page
    }
    return _answer(page, items, reasons, list(row.notes), ranker=row.ranker, fallback=row.fallback)


def recommend_for_user(
    *,
    user: User,
    k: int = DEFAULT_PAGE,
    offset: int = 0,
    filters: ItemFilters | None = None,
    exclude_seen: bool | None = None,
    sources: tuple[str, ...] = SOURCES,
    scoring: str = "auto",
    as_of: datetime | None = None,
    precomputed_list: bool = True,
    log: bool = True,
) -> Answer:
    """What to show this person next, with the reason and source(s) of each result.

    A plain request (every source, the active ranker, now) is answered from the person's
    precomputed list (recommendations.precomputed) unless `precomputed_list=False`; the list
    is what a live computation gives, kept until the person acts or the models change.
    `sources` limits the candidate sources; `scoring="blend"` bypasses the trained ranker and
    `scoring="source"` orders by the one source asked for (the evaluation's ablations). `as_of`
    replays the past: only activities before it count and popularity is read as of then (the
    offline evaluation asks as of each person's split point, as the ranker was trained).
    """
    started = time.monotonic()
    config = settings.RECOMMENDER
    if scoring not in ("auto", "blend", "source"):
        raise ValueError(f"scoring must be 'auto', 'blend' or 'source', not {scoring!r}")
    if scoring == "source" and len(sources) != 1:
        raise ValueError("scoring='source' orders by one source: ask for exactly one")
    filters = filters or ItemFilters()
    exclude_seen = config["EXCLUDE_SEEN"] if exclude_seen is None else exclude_seen
    plain = scoring == "auto" and tuple(sources) == SOURCES and as_of is None and exclude_seen == config["EXCLUDE_SEEN"]
    answer = None
    if precomputed_list and plain and config["PRECOMPUTED_SIZE"]:
        answer = _answer_from_list(user=user, filters=filters, offset=offset, k=k)
    if answer is None:
        answer = _recommend_live(
            user=user,
            k=k,
            offset=offset,
            filters=filters,
            exclude_seen=exclude_seen,
            sources=sources,
            scoring=scoring,
            as_of=as_of,
        )
    if log:
        answer.recommendation_id = _log(context=RecommendationContext.USER, user=user, results=answer.results)
    logger.debug(
        "recommended for user=%s n=%d ranker=%s ms=%d",
        user.pk,
        len(answer.results),
        answer.ranker,
        (time.monotonic() - started) * 1000,
    )
    return answer


def _recommend_live(
    *,
    user: User,
    k: int,
    offset: int,
    filters: ItemFilters,
    exclude_seen: bool,
    sources: tuple[str, ...],
    scoring: str,
    as_of: datetime | None,
) -> Answer:
    model_name = serving_model()
    state = person_state(user_id=user.pk, model_name=model_name, as_of=as_of)
    if exclude_seen:
        filters = filters.excluding(state.seen)
    ordered, categories, ranker, fallback, notes = _ranked_for_user(
        state=state,
        filters=filters,
        size=settings.RECOMMENDER["CANDIDATES_PER_SOURCE"] + offset + k,
        model_name=model_name,
        sources=sources,
        scoring=scoring,
    )
    page = _apply_rules(ordered, categories, offset=offset, k=k, pinned=_pinned(filters))
    items = Item.objects.in_bulk([candidate.item_id for candidate in page])
    reasons = _reasons_for_user(state, page, items, model_name)
    return _answer(page, items, reasons, notes, ranker=ranker, fallback=fallback)


def _text_vector(text: str) -> np.ndarray:
    from recommendations.ml.encoder import get_encoder

    return get_encoder(serving_model()).encode([text]).vectors[0]


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
    model_name = serving_model()
    query = _text_vector(text)
    candidates: dict[int, Candidate] = {}
    size = config["CANDIDATES_PER_SOURCE"] + offset + k
    merge_ranked(
        candidates,
        "semantic",
        selectors.semantic_candidates(vectors=[query], model_name=model_name, filters=filters, k=size),
    )
    _features(candidates, query_vectors=[query], model_name=model_name)
    interest = None
    if user is not None:
        interest = (
            UserInterest.objects.filter(user=user, embedding_model=model_name, cluster=0)
            .annotate(raw=VectorBytes("embedding"))
            .values_list("raw", flat=True)
            .first()
        )
        interest = vector_from_bytes(interest) if interest is not None else None
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
    page = _apply_rules(list(candidates.values()), _categories(candidates), offset=offset, k=k)
    items = Item.objects.in_bulk([candidate.item_id for candidate in page])
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
    filters = filters.excluding({item.id})
    model_name = serving_model()
    size = config["CANDIDATES_PER_SOURCE"] + offset + k
    candidates: dict[int, Candidate] = {}
    behaviour = selectors.behaviour_candidates(history={item.id: 1.0}, filters=filters, k=size)
    merge_ranked(candidates, "behaviour", behaviour)
    vector = selectors.item_vectors_for(item_ids=[item.id], model_name=model_name).get(item.id)
    query_vectors = [vector] if vector is not None else []
    if query_vectors:
        merge_ranked(
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
    page = _apply_rules(list(candidates.values()), _categories(candidates), offset=offset, k=k)
    items = Item.objects.in_bulk([candidate.item_id for candidate in page])
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
