"""The replay check: how a version would have ranked what people chose in past logged answers.

From the log: the most recent answers to people (context "user") in which they clicked at
least one item. For each, the person's recommendations are computed again through the same
service, as of the moment of that answer (only what they had done before counts), by the
version under test and by what serves now (the active version, or the blend); a clicked item
in the top k is a hit. The figure is the share of clicked items each finds in its top k, and
their mean reciprocal rank.

What it is not: an unbiased estimate of the click-through rate a new version would get. The
clicks were on items the serving version chose to show, so the serving version is favoured;
a candidate that finds those items as well is at least not worse on what people liked, and
a candidate that loses them is a risk worth knowing before an experiment. The experiment is
what measures the effect; this is the look before it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import timedelta

from django.utils import timezone

from recommendations.models import (
    RankerModel,
    Recommendation,
    RecommendationContext,
    RecommendedItem,
    ReplayCheck,
)
from recommendations.serving.service import recommend_for_user
from users.models import User

logger = logging.getLogger(__name__)

# Each replayed answer is two live computations (about 50-200 ms each here): 100 answers keep a
# bulk worker busy for up to a minute.
REPLAY_ANSWERS = 100
REPLAY_DAYS = 28


def _ranked_ids(*, user: User, as_of, k: int, ranker_id: int | None, blend: bool) -> list[int]:
    answer = recommend_for_user(
        user=user,
        k=k,
        as_of=as_of,
        precomputed_list=False,
        log=False,
        scoring="blend" if blend else "auto",
        ranker_id=ranker_id,
    )
    return [result.item.id for result in answer.results]


def _score(ranked: list[int], clicked: set[int]) -> tuple[int, float]:
    hits, reciprocal = 0, 0.0
    for position, item_id in enumerate(ranked):
        if item_id in clicked:
            hits += 1
            reciprocal += 1.0 / (position + 1)
    return hits, reciprocal


def replay_check_run(
    *,
    ranker_id: int | None,
    requested_by: User | None = None,
    k: int = 20,
    max_answers: int = REPLAY_ANSWERS,
    days: int = REPLAY_DAYS,
) -> ReplayCheck:
    """Replay `ranker_id` (None: the blend) and what serves now on past answers with clicks; keep the figures."""
    started = time.monotonic()
    since = timezone.now() - timedelta(days=days)
    answers = list(
        Recommendation.objects.filter(
            context=RecommendationContext.USER,
            user__isnull=False,
            created_at__gte=since,
            items__clicked_at__isnull=False,
        )
        .distinct()
        .order_by("-created_at")
        .values_list("id", "user_id", "created_at")[:max_answers]
    )
    clicked: dict = defaultdict(set)
    for recommendation_id, item_id in RecommendedItem.objects.filter(
        recommendation_id__in=[row[0] for row in answers], clicked_at__isnull=False
    ).values_list("recommendation_id", "item_id"):
        clicked[recommendation_id].add(item_id)
    people = User.objects.in_bulk({row[1] for row in answers})
    active = RankerModel.objects.filter(is_active=True).values_list("id", flat=True).first()
    totals = {"candidate": [0, 0.0], "serving": [0, 0.0]}
    n_clicked = 0
    for recommendation_id, user_id, created_at in answers:
        person = people.get(user_id)
        if person is None:
            continue
        chosen = clicked[recommendation_id]
        n_clicked += len(chosen)
        for name, version, blend in (
            ("candidate", ranker_id, ranker_id is None),
            ("serving", active, active is None),
        ):
            hits, reciprocal = _score(
                _ranked_ids(user=person, as_of=created_at, k=k, ranker_id=version, blend=blend), chosen
            )
            totals[name][0] += hits
            totals[name][1] += reciprocal
    serving_label = "the blend" if active is None else str(RankerModel.objects.defer("artifact").get(pk=active))
    figures = {
        "k": k,
        "days": days,
        "answers": len(answers),
        "clicked_items": n_clicked,
        "candidate_hit": round(totals["candidate"][0] / n_clicked, 4) if n_clicked else None,
        "candidate_mrr": round(totals["candidate"][1] / n_clicked, 4) if n_clicked else None,
        "serving_hit": round(totals["serving"][0] / n_clicked, 4) if n_clicked else None,
        "serving_mrr": round(totals["serving"][1] / n_clicked, 4) if n_clicked else None,
        "serving": serving_label,
        "seconds": round(time.monotonic() - started, 1),
    }
    check = ReplayCheck.objects.create(ranker_id=ranker_id, figures=figures, requested_by=requested_by)
    logger.info(
        "replay check ranker=%s answers=%d clicked=%d ms=%d",
        ranker_id,
        len(answers),
        n_clicked,
        (time.monotonic() - started) * 1000,
    )
    return check


def latest_replay_checks() -> dict[int | None, ReplayCheck]:
    """The newest check of each version (None: the blend)."""
    latest: dict[int | None, ReplayCheck] = {}
    for check in ReplayCheck.objects.order_by("-created_at", "-id"):
        latest.setdefault(check.ranker_id, check)
    return latest
