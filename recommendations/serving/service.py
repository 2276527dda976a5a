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
import time
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import numpy as np

from catalog.models import Item
from core.conf import recommender_settings
from core.exceptions import ApplicationError
from core.text import text_clean
from core.vector_wire import VectorBytes, vector_from_bytes
from recommendations.ml.model_cards import model_card
from recommendations.models import (
    ExperimentSurface,
    RecommendationContext,
    UserInterest,
)
from recommendations.retrieval.behaviour import behaviour_candidates
from recommendations.retrieval.candidates import SOURCES, Candidate, merge_ranked
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.person import person_state
from recommendations.retrieval.popular import popular_candidates
from recommendations.retrieval.semantic import item_vectors_for, semantic_candidates
from recommendations.serving.answers import DEFAULT_PAGE, MATCH_CLOSE, MATCH_NONE, Answer, answer_build, answer_log
from recommendations.serving.arms import Arm, arm_for_person
from recommendations.serving.precomputed import answer_from_list
from recommendations.serving.reasons import reasons_for_text, reasons_for_user
from recommendations.serving.rules import apply_rules, item_categories, pinned_items
from recommendations.serving.scoring import ranked_for_user, similarity_and_popularity
from recommendations.serving.second_opinion import second_opinion
from recommendations.vectors.text_model import TextSpace, text_space, text_space_of
from users.models import User

if TYPE_CHECKING:
    from recommendations.ml.encoder import EncodedTexts

logger = logging.getLogger(__name__)


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
    requested_by: User | None = None,
    ranker_id: int | None = None,
) -> Answer:
    """What to show this person next, with the reason and source(s) of each result.

    `requested_by`: someone else asking for this person (a staff look-up); the answer is logged
    as context "staff", not as something the person saw.

    A plain request (every source, the active ranker, now) is answered from the person's
    precomputed list (recommendations.serving.precomputed) unless `precomputed_list=False`; the list
    is what a live computation gives, kept until the person acts or the models change.
    `sources` limits the candidate sources; `scoring="blend"` bypasses the trained ranker and
    `scoring="source"` orders by the one source asked for (the evaluation's ablations). `as_of`
    replays the past: only activities before it count and popularity is read as of then (the
    offline evaluation asks as of each person's split point, as the ranker was trained).

    `ranker_id` scores with that stored version instead of the active one (a replay check).
    While an experiment runs on personal recommendations, a plain request is answered by the
    person's arm (recommendations.serving.arms: its ranker, or the blend) and the log names
    the experiment and the arm; the caller never needs to know.
    """
    started = time.monotonic()
    config = recommender_settings()
    if scoring not in ("auto", "blend", "source"):
        raise ValueError(f"scoring must be 'auto', 'blend' or 'source', not {scoring!r}")
    if scoring == "source" and len(sources) != 1:
        raise ValueError("scoring='source' orders by one source: ask for exactly one")
    filters = filters or ItemFilters()
    exclude_seen = config.exclude_seen if exclude_seen is None else exclude_seen
    plain = (
        scoring == "auto"
        and ranker_id is None
        and tuple(sources) == SOURCES
        and as_of is None
        and exclude_seen == config.exclude_seen
    )
    arm: Arm | None = arm_for_person(surface=ExperimentSurface.USER, person_id=user.pk) if plain else None
    if arm is not None:
        scoring, ranker_id = ("blend", None) if arm.ranker_id is None else ("auto", arm.ranker_id)
    answer = None
    if precomputed_list and plain and config.precomputed_size:
        answer = answer_from_list(user=user, filters=filters, offset=offset, k=k, arm=arm)
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
            ranker_id=ranker_id,
        )
    if arm is not None:
        answer.experiment_id, answer.arm_id = arm.experiment_id, arm.arm_id
    if log:
        looked_up = requested_by is not None and requested_by.pk != user.pk
        answer.recommendation_id = answer_log(
            context=RecommendationContext.STAFF if looked_up else RecommendationContext.USER,
            user=user,
            results=answer.results,
            ranker_id=answer.ranker_id,
            requested_by=requested_by if looked_up else None,
            experiment_id=answer.experiment_id,
            arm_id=answer.arm_id,
        )
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
    ranker_id: int | None = None,
) -> Answer:
    model_name = recommender_settings().serving_model
    state = person_state(user_id=user.pk, model_name=model_name, as_of=as_of)
    if exclude_seen:
        filters = filters.excluding(state.seen)
    ranked = ranked_for_user(
        state=state,
        filters=filters,
        size=recommender_settings().candidates_per_source + offset + k,
        model_name=model_name,
        sources=sources,
        scoring=scoring,
        ranker_id=ranker_id,
    )
    page = apply_rules(ranked.candidates, ranked.categories, offset=offset, k=k, pinned=pinned_items(filters))
    items = Item.objects.in_bulk([candidate.item_id for candidate in page])
    reasons = reasons_for_user(state, page, items, model_name)
    return answer_build(
        page,
        items,
        reasons,
        list(ranked.notes),
        ranker=ranked.scoring.ranker,
        ranker_id=ranked.scoring.ranker_id,
        fallback=ranked.scoring.fallback,
    )


def _main_interest(*, user: User, model_name: str) -> np.ndarray | None:
    """The person's main interest vector (cluster 0), if one is built yet."""
    raw = (
        UserInterest.objects.filter(user=user, embedding_model=model_name, cluster=0)
        .annotate(raw=VectorBytes("embedding"))
        .values_list("raw", flat=True)
        .first()
    )
    return vector_from_bytes(raw) if raw is not None else None


MatchFloor = float | None | Literal["card"]


def recommend_for_text(
    *,
    text: str,
    user: User | None = None,
    k: int = 20,
    offset: int = 0,
    filters: ItemFilters | None = None,
    log: bool = True,
    popularity_weight: float | None = None,
    match_floor: MatchFloor = "card",
    text_model: Literal["active", "frozen"] = "active",
) -> Answer:
    """Items that answer a free text (a search, a customer-service question), best first.

    Score: cosine(text, item) + popularity_weight x log(1 + people who interacted); with a known
    person, + BLEND_SEMANTIC x cosine(their interest, item) as a gentle personal tilt.
    popularity_weight None is the TEXT_POPULARITY setting (the evaluation asks with 0.0 too).

    Honest answers: when the best candidate's cosine is below the serving model's calibrated
    floor (its ModelCard's match_floor; `match_floor` overrides it, None turns it off), or the
    card's English second opinion finds none of the nearest items close to an English question
    (serving.second_opinion, by its own model's floor), nothing is close: the answer says
    `match="none"` and holds the popular items instead, explained as popular. Otherwise
    `match="close"` and each reason quotes the item's own words closest to the text
    (serving.reasons.reasons_for_text).

    The active text model (vectors.text_model) answers when there is one: the text's vector
    goes through its query map and is searched among its own item vectors, both read from the
    one active row, and its floor (carried from the encoder's card) applies. `text_model=
    "frozen"` asks the frozen encoder instead (the evaluation's ablation).

    While an experiment runs on free text, a signed-in person's question is answered in their
    arm's space (recommendations.serving.arms: its text model version, active or not, or the
    frozen encoder), query map and item vectors from that one version, and the log names the
    experiment and the arm; anonymous visitors and `text_model="frozen"` take no part.
    """
    config = recommender_settings()
    text = text_clean(text, field="text", max_length=config.max_text_length)
    if not text:
        raise ApplicationError("text is empty")
    if text_model not in ("active", "frozen"):
        raise ValueError(f"text_model must be 'active' or 'frozen', not {text_model!r}")
    filters = filters or ItemFilters()
    model_name = recommender_settings().serving_model
    arm = _text_arm(user=user, model_name=model_name) if text_model == "active" else None
    if arm is None:
        space = text_space(base_model=model_name, frozen=text_model == "frozen")
    elif arm.text_model_id is None or arm.text_model_version is None:
        space = TextSpace(base_model=model_name, item_model=model_name)  # the frozen encoder's arm
    else:
        space = text_space_of(
            base_model=model_name,
            text_model_id=arm.text_model_id,
            version=arm.text_model_version,
            match_floor=arm.text_model_floor,
        )
    encoded = _text_encoded(text)
    # The frozen encoder's vector quotes the item's own words (reasons) and meets the person's
    # interest; the text space's searches the items.
    query = encoded.vectors[0]
    searched = space.query(query)
    candidates: dict[int, Candidate] = {}
    size = config.candidates_per_source + offset + k
    merge_ranked(
        candidates,
        "semantic",
        semantic_candidates(vectors=[searched], model_name=space.item_model, filters=filters, k=size),
    )
    similarity_and_popularity(candidates, query_vectors=[searched], model_name=space.item_model)
    best = max((candidate.semantic for candidate in candidates.values()), default=None)
    card_floor = model_card(model_name).match_floor if space.is_frozen else space.match_floor
    floor = card_floor if match_floor == "card" else match_floor
    notes = []
    if encoded.truncated[0]:
        notes.append("the text is longer than the encoder reads: only its beginning was used")
    opinion = None
    if floor is not None and best is not None and best >= floor:
        opinion = second_opinion(text=text, candidates=candidates, model_name=model_name)
        if opinion is not None and opinion.nothing_close:
            notes.append(f"a second opinion on English text ({opinion.model}) found nothing close")
    if floor is not None and (best is None or best < floor or (opinion is not None and opinion.nothing_close)):
        answer = _popular_instead(filters=filters, offset=offset, k=k, notes=notes)
        answer.best_similarity = best
    else:
        answer = _text_answer(
            text=text,
            query=query,
            candidates=candidates,
            user=user,
            offset=offset,
            k=k,
            notes=notes,
            popularity_weight=config.text_popularity if popularity_weight is None else popularity_weight,
            model_name=model_name,
        )
        answer.best_similarity = best
        if floor is None:
            answer.notes.append(f"no match floor is calibrated for {model_name}: weak answers are not told apart")
    if not space.is_frozen:
        answer.notes.append(f"answered with text model v{space.version}, learned from this catalog's questions")
    if arm is not None:
        answer.experiment_id, answer.arm_id = arm.experiment_id, arm.arm_id
    if log:
        answer.recommendation_id = answer_log(
            context=RecommendationContext.TEXT,
            user=user,
            results=answer.results,
            query_text=text,
            experiment_id=answer.experiment_id,
            arm_id=answer.arm_id,
        )
    return answer


def _text_arm(*, user: User | None, model_name: str) -> Arm | None:
    """The person's arm of the experiment running on free text (one small query), if they are in one."""
    arm = arm_for_person(surface=ExperimentSurface.TEXT, person_id=user.pk if user is not None else None)
    if arm is not None and arm.text_model_id is not None and arm.text_model_base != model_name:
        # The arm's version adapts another encoder than the one reading text now (the setting
        # changed during the experiment): it cannot answer this text, so the person is served
        # as outside the experiment and the answer is not counted for the arm.
        logger.warning(
            "experiment=%s arm=%s: its text model adapts %s, not %s: answered outside the experiment",
            arm.experiment_id,
            arm.arm_id,
            arm.text_model_base,
            model_name,
        )
        return None
    return arm


def _text_encoded(text: str) -> EncodedTexts:
    from recommendations.ml.encoder import get_encoder

    return get_encoder(recommender_settings().serving_model).encode([text], kind="query")


def _text_answer(
    *,
    text: str,
    query: np.ndarray,
    candidates: dict[int, Candidate],
    user: User | None,
    offset: int,
    k: int,
    notes: list[str],
    popularity_weight: float,
    model_name: str,
) -> Answer:
    config = recommender_settings()
    interest = _main_interest(user=user, model_name=model_name) if user is not None else None
    personal: dict[int, float] = {}
    if interest is not None:
        vectors = item_vectors_for(item_ids=list(candidates), model_name=model_name)
        personal = {item_id: float(np.dot(vector, interest)) for item_id, vector in vectors.items()}
    for candidate in candidates.values():
        candidate.score = (
            candidate.semantic
            + popularity_weight * candidate.popularity
            + config.blend_semantic * personal.get(candidate.item_id, 0.0)
        )
    page = apply_rules(list(candidates.values()), item_categories(candidates), offset=offset, k=k)
    items = Item.objects.in_bulk([candidate.item_id for candidate in page])
    reasons = reasons_for_text(
        text=text, query=query, page=page, items=items, model_name=model_name, user_id=user.pk if user else None
    )
    notes = [*notes, "free-text answers are ranked by meaning and popularity (no trained ranker for text yet)"]
    if user is not None and interest is None:
        notes.append("no interest vector for this person yet: not personalised")
    answer = answer_build(page, items, reasons, notes)
    answer.match = MATCH_CLOSE
    return answer


def _popular_instead(*, filters: ItemFilters, offset: int, k: int, notes: list[str]) -> Answer:
    """Nothing is close to the text: the popular items, said to be popular, never "matching"."""
    candidates: dict[int, Candidate] = {}
    ranked = popular_candidates(filters=filters, k=offset + k, by="popularity")
    merge_ranked(candidates, "popular", ranked)
    for item_id, people in ranked:
        candidates[item_id].score = people
    page = apply_rules(list(candidates.values()), item_categories(candidates), offset=offset, k=k)
    items = Item.objects.in_bulk([candidate.item_id for candidate in page])
    reasons = {
        candidate.item_id: (
            f"popular in {items[candidate.item_id].category}" if items[candidate.item_id].category else "popular"
        )
        for candidate in page
    }
    notes = [*notes, "nothing in the catalog is a close match for this text: these are popular items instead"]
    answer = answer_build(page, items, reasons, notes)
    answer.match = MATCH_NONE
    return answer


def similar_items(
    *, item: Item, k: int = 20, offset: int = 0, filters: ItemFilters | None = None, log: bool = True
) -> Answer:
    """Items like this one: bought or watched by the same people, or described alike.

    Score: behaviour weight (scaled to the best neighbour) + SIMILAR_SEMANTIC x cosine. An item
    nobody has touched yet still gets answers through its text.
    """
    config = recommender_settings()
    filters = filters or ItemFilters()
    filters = filters.excluding({item.id})
    model_name = recommender_settings().serving_model
    size = config.candidates_per_source + offset + k
    candidates: dict[int, Candidate] = {}
    behaviour = behaviour_candidates(history={item.id: 1.0}, filters=filters, k=size)
    merge_ranked(candidates, "behaviour", behaviour)
    vector = item_vectors_for(item_ids=[item.id], model_name=model_name).get(item.id)
    query_vectors = [vector] if vector is not None else []
    if query_vectors:
        merge_ranked(
            candidates,
            "semantic",
            semantic_candidates(vectors=query_vectors, model_name=model_name, filters=filters, k=size),
        )
    for neighbour_id, weight in behaviour:
        candidates[neighbour_id].behaviour = weight
    similarity_and_popularity(candidates, query_vectors=query_vectors, model_name=model_name)
    best = max((candidate.behaviour for candidate in candidates.values()), default=0.0) or 1.0
    for candidate in candidates.values():
        candidate.score = candidate.behaviour / best + config.similar_semantic * candidate.semantic
    page = apply_rules(list(candidates.values()), item_categories(candidates), offset=offset, k=k)
    items = Item.objects.in_bulk([candidate.item_id for candidate in page])
    reasons = _similar_reasons(page, anchor=item)
    notes = [] if behaviour else ["no one has interacted with this item yet: similar by description only"]
    answer = answer_build(page, items, reasons, notes)
    if log:
        answer.recommendation_id = answer_log(
            context=RecommendationContext.SIMILAR, user=None, results=answer.results, anchor=item
        )
    return answer


def _similar_reasons(page: list[Candidate], *, anchor: Item) -> dict[int, str]:
    return {
        candidate.item_id: (
            f"people who chose {anchor.title} also chose this"
            if candidate.behaviour > 0
            else f"described like {anchor.title}"
        )
        for candidate in page
    }
