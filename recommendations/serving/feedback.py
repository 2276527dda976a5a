"""Feedback on shown recommendations: impressions, clicks, dismissals (the API and pages call
this)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from core.exceptions import ApplicationError, NotFoundError
from recommendations.models import Feedback, FeedbackKind, Recommendation, RecommendationContext, RecommendedItem
from users.models import ActivityKind, User

logger = logging.getLogger(__name__)

# The RecommendedItem timestamp each kind sets the first time (the training data reads them).
_TIMESTAMP_FIELD = {
    FeedbackKind.IMPRESSION: "impressed_at",
    FeedbackKind.CLICK: "clicked_at",
    FeedbackKind.DISMISS: "dismissed_at",
}


@dataclass
class FeedbackSummary:
    recorded: int
    already_recorded: int


def feedback_record(
    *, recommendation_id: uuid.UUID, item_ids: Sequence[int], kind: str, user: User | None
) -> FeedbackSummary:
    """Record what the person did with items of one logged recommendation; idempotent.

    A recommendation made for a signed-in person takes feedback from that person only (anyone
    else gets "not found", so ids do not leak), and a staff look-up of a person from no one; one
    made for nobody (an anonymous free-text answer, similar items) takes it from whoever holds
    its id. Items hidden (inactive) since they were shown are "not shown" to anyone but staff. A
    dismissal by a signed-in person is also an Activity of kind dismiss, so the recommender stops
    proposing the item.
    """
    if kind not in FeedbackKind.values:
        raise ApplicationError(f"unknown kind {kind!r}; expected one of {', '.join(FeedbackKind.values)}")
    recommendation = Recommendation.objects.filter(id=recommendation_id).first()
    owner_id = recommendation.user_id if recommendation else None
    if (
        recommendation is None
        # A staff look-up of a person is not what the person saw: no one's feedback counts.
        or recommendation.context == RecommendationContext.STAFF
        or (owner_id is not None and (user is None or user.id != owner_id))
    ):
        raise NotFoundError("No recommendation with this id.")
    wanted = list(dict.fromkeys(item_ids))
    shown_rows = RecommendedItem.objects.filter(recommendation=recommendation, item_id__in=wanted)
    if user is None or not user.is_staff:
        # An item hidden since it was shown is answered like one never shown: its id tells
        # nothing, and a dismissal does not record an activity on a hidden item.
        shown_rows = shown_rows.filter(item__is_active=True)
    shown = {row.item_id: row for row in shown_rows.select_related("item")}
    missing = [item_id for item_id in wanted if item_id not in shown]
    if missing:
        raise ApplicationError(
            "items not shown in this recommendation",
            extra={
                "fields": {"item_ids": [f"item {item_id} was not shown in this recommendation" for item_id in missing]}
            },
        )
    with transaction.atomic():
        already = set(
            Feedback.objects.filter(recommendation=recommendation, kind=kind, item_id__in=wanted).values_list(
                "item_id", flat=True
            )
        )
        new_ids = [item_id for item_id in wanted if item_id not in already]
        person = user if user is not None and user.is_authenticated else None
        # ignore_conflicts: two identical requests at once still give one row.
        Feedback.objects.bulk_create(
            [Feedback(recommendation=recommendation, item_id=item_id, user=person, kind=kind) for item_id in new_ids],
            ignore_conflicts=True,
        )
        field = _TIMESTAMP_FIELD[FeedbackKind(kind)]
        RecommendedItem.objects.filter(
            recommendation=recommendation, item_id__in=new_ids, **{f"{field}__isnull": True}
        ).update(**{field: timezone.now()})
        if kind == FeedbackKind.DISMISS and person is not None:
            from users.services import activity_record

            for item_id in new_ids:
                activity_record(user=person, kind=ActivityKind.DISMISS, item=shown[item_id].item)
    logger.info(
        "feedback kind=%s recommendation=%s new=%d repeated=%d", kind, recommendation.id, len(new_ids), len(already)
    )
    return FeedbackSummary(recorded=len(new_ids), already_recorded=len(already))
