"""A person's ranked list computed ahead and kept (serving.list_store), and the page answered from
it."""

from __future__ import annotations

from dataclasses import replace

from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from catalog.models import Item
from core.conf import recommender_settings
from recommendations.models import (
    ExperimentSurface,
    PrecomputedList,
)
from recommendations.retrieval.candidates import SOURCES
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.person import person_state
from recommendations.serving import list_store
from recommendations.serving.answers import DEFAULT_PAGE, Answer, answer_build
from recommendations.serving.arms import Arm, arm_for_person
from recommendations.serving.reasons import reasons_for_user
from recommendations.serving.rules import apply_rules, pinned_items
from recommendations.serving.scoring import ranked_for_user
from users.models import Activity, User


def list_signature_for(*, user_id: int, arm: Arm | None) -> list_store.ListSignature:
    """The signature a list must have to answer this person now: in an experiment, the ranker
    of their arm replaces the active one (None: the blend arm)."""
    return _for_arm(list_store.list_signature(user_id=user_id), arm)


def _for_arm(signature: list_store.ListSignature, arm: Arm | None) -> list_store.ListSignature:
    return signature if arm is None else replace(signature, ranker_id=arm.ranker_id)


def precomputed_list_refresh(
    *, user_id: int, signature: list_store.ListSignature | None = None, arm: Arm | None = None
) -> PrecomputedList:
    """Compute the person's ranked list as a request with no filters would, and keep it
    (recommendations.serving.list_store). The worker calls it after each of their activities; callers
    check first that lists are on (RECOMMENDER_PRECOMPUTED_SIZE).

    Without a signature, the person's experiment arm is looked up here (the worker's call); a
    request passes the arm it found with the signature it made from it."""
    config = recommender_settings()
    started = timezone.now()
    if signature is None:
        arm = arm_for_person(surface=ExperimentSurface.USER, person_id=user_id)
        signature = list_signature_for(user_id=user_id, arm=arm)
    model_name = recommender_settings().serving_model
    state = person_state(user_id=user_id, model_name=model_name)
    filters = ItemFilters().excluding(state.seen) if config.exclude_seen else ItemFilters()
    ranked = ranked_for_user(
        state=state,
        filters=filters,
        size=config.candidates_per_source + DEFAULT_PAGE,
        model_name=model_name,
        sources=SOURCES,
        scoring="blend" if arm is not None and arm.ranker_id is None else "auto",
        ranker_id=arm.ranker_id if arm is not None else None,
    )
    if ranked.scoring.ranker_id is not None and ranked.scoring.ranker_id != signature.ranker_id:
        # Staff activated a version between the signature and the scoring: the list is that
        # version's, and says so (its answers log the ranker that really scored them).
        signature = replace(signature, ranker_id=ranked.scoring.ranker_id)
    ordered = ranked.candidates
    kept = ordered[: config.precomputed_size]
    items = Item.objects.in_bulk([candidate.item_id for candidate in kept])
    kept = [candidate for candidate in kept if candidate.item_id in items]
    reasons = reasons_for_user(state, kept, items, model_name)
    return list_store.list_store(
        user_id=user_id,
        model_name=model_name,
        signature=signature,
        computed_at=started,
        ordered=kept,
        reasons=reasons,
        ranker=ranked.scoring.ranker,
        fallback=ranked.scoring.fallback,
        notes=list(ranked.notes),
        complete=len(kept) == len(ordered),
    )


def precomputed_list_refresh_if_kept(*, user_id: int) -> bool:
    """Recompute the person's list if one is kept (they asked before): people who never ask
    for recommendations cost the worker nothing."""
    if not recommender_settings().precomputed_size:
        return False
    if not PrecomputedList.objects.filter(user_id=user_id).exists():
        return False
    precomputed_list_refresh(user_id=user_id)
    return True


def precomputed_lists_behind() -> list[int]:
    """The people whose kept list is older than their newest activity (ids, in order)."""
    if not recommender_settings().precomputed_size:
        return []
    newest = Activity.objects.filter(user_id=OuterRef("user_id")).order_by("-id").values("id")[:1]
    behind = (
        PrecomputedList.objects.annotate(newest_activity_id=Subquery(newest))
        .filter(newest_activity_id__gt=F("last_activity_id"))
        .values_list("user_id", flat=True)
        .distinct()
    )
    return sorted(behind)


def precomputed_lists_refresh_behind() -> int:
    """Recompute every kept list older than its person's newest activity; returns how many.

    The worker refreshes a list right after each activity, but that task can be lost: the broker
    was down when it was queued, or the worker died holding it. The sweep's batch embeds those
    rows and rebuilds the interests; this brings their lists up to date too (a request would
    recompute a stale list itself, paying for it in its answer time).
    """
    user_ids = precomputed_lists_behind()
    for user_id in user_ids:
        precomputed_list_refresh(user_id=user_id)
    return len(user_ids)


CATCHING_UP = "computed before your latest activity (without the items it touched): the next answer includes it"


def answer_from_list(*, user: User, filters: ItemFilters, offset: int, k: int, arm: Arm | None = None) -> Answer | None:
    """The page from the person's kept list (computed now if missing or stale, or, while the
    worker catches up with their newest activities, the kept list less what those touched:
    list_store.list_catching_up); None when the filters leave too few of its items and the list
    was cut (a live computation must search). `arm`: the person's experiment arm, whose ranker
    the list must be scored with."""
    row, signature = list_store.list_row_and_signature(user_id=user.pk, model_name=recommender_settings().serving_model)
    signature = _for_arm(signature, arm)
    notes = []
    if row is None or not list_store.list_current(row, signature):
        touched = list_store.list_catching_up(row, signature)
        if row is None or touched is None:
            row = precomputed_list_refresh(user_id=user.pk, signature=signature, arm=arm)
        else:
            filters = filters.excluding(touched)
            notes.append(CATCHING_UP)
    candidates, categories = list_store.list_candidates(row, filters)
    # The list left out what the person had seen when it was computed (nothing since: the
    # signature matched); pinned items are read now, so they are checked now.
    unseen_by = user.pk if recommender_settings().exclude_seen else None
    page = apply_rules(candidates, categories, offset=offset, k=k, pinned=pinned_items(filters, unseen_by=unseen_by))
    if len(page) < k and not row.complete:
        return None
    items = Item.objects.in_bulk([candidate.item_id for candidate in page])
    kept_reasons = dict(zip(row.item_ids, row.reasons, strict=True))
    reasons = {
        candidate.item_id: "featured" if "pinned" in candidate.sources else kept_reasons[candidate.item_id]
        for candidate in page
    }
    return answer_build(
        page,
        items,
        reasons,
        [*row.notes, *notes],
        ranker=row.ranker,
        ranker_id=row.answered_by_id,
        fallback=row.fallback,
    )
