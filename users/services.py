import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from django.db import router, transaction
from django.db.models import CharField, Count, F, Q
from django.db.models.deletion import Collector
from django.db.models.functions import Cast
from django.utils import timezone

from catalog.models import Item
from core.exceptions import ApplicationError, NotFoundError
from core.models import EmbeddingStatus, IdempotencyRecord
from core.queueing import EMBED_ACTIVITY, EMBED_ACTIVITY_BATCH, REFRESH_USER_INTEREST, queue_on_commit
from core.records import Rejection
from core.replicas import replica_mark_written
from core.summaries import UpsertCounts
from core.text import text_clean, text_hash, text_max_length
from users.activity_rules import activity_check, activity_kind_check
from users.community import community_mark_stale, community_mark_stale_for, has_community_words, items_described_by
from users.events import EventRow
from users.models import Activity, ActivityKind, ActivityVector, HelpfulVote, User

logger = logging.getLogger(__name__)

# What an admin log entry about a deleted person's rows says instead of naming them.
DELETED_ACCOUNT_REPR = "(deleted account)"


def user_bulk_ensure(*, display_names: Mapping[str, str]) -> tuple[dict[str, int], UpsertCounts]:
    """Return {external_id: user pk} and counts, creating users that do not exist yet.

    Imported people get no usable password: they exist to carry their history. A display
    name given here replaces the stored one.
    """
    counts = UpsertCounts()
    with transaction.atomic():
        existing: dict[str, User] = {
            user.external_id: user
            for user in User.objects.select_for_update().filter(external_id__in=list(display_names))
            # Always true: the filter matched the id against the names asked for.
            if user.external_id is not None
        }
        to_create: dict[str, User] = {}
        for external_id, display_name in display_names.items():
            user = existing.get(external_id)
            if user is None:
                user = User(username=external_id, external_id=external_id, display_name=display_name)
                user.set_unusable_password()
                to_create[external_id] = user
            elif display_name and user.display_name != display_name:
                user.display_name = display_name
                user.save(update_fields=["display_name"])
                counts.updated += 1
            else:
                counts.skipped += 1
        User.objects.bulk_create(to_create.values())
        counts.created = len(to_create)
        existing.update(to_create)
    return {external_id: user.pk for external_id, user in existing.items()}, counts


def event_source_key(row: EventRow) -> str:
    parts = [row.user_id, row.item_id or "", row.kind, row.timestamp.isoformat(), row.text or "", repr(row.rating)]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def activity_bulk_import(
    *, rows: Sequence[EventRow], user_ids: Mapping[str, int], item_ids: Mapping[str, int]
) -> tuple[UpsertCounts, list[Rejection]]:
    """Insert imported events once: an event seen before (same fingerprint) is skipped."""
    counts = UpsertCounts()
    rejections = []
    by_key: dict[str, tuple[EventRow, int | None]] = {}
    for row in rows:
        item_pk = None
        if row.item_id is not None:
            item_pk = item_ids.get(row.item_id)
            if item_pk is None:
                rejections.append(Rejection(row.file, row.line, f"unknown item_id {row.item_id!r}"))
                continue
        key = event_source_key(row)
        if key in by_key:
            counts.skipped += 1
        else:
            by_key[key] = (row, item_pk)
    with transaction.atomic():
        seen = set(Activity.objects.filter(source_key__in=list(by_key)).values_list("source_key", flat=True))
        new = [
            Activity(
                user_id=user_ids[row.user_id],
                item_id=item_pk,
                kind=row.kind,
                text=row.text,
                rating=row.rating,
                created_at=row.timestamp,
                source_key=key,
                text_hash=text_hash(row.text) if row.text else "",
                embedding_status=EmbeddingStatus.PENDING if row.text else EmbeddingStatus.NO_TEXT,
            )
            for key, (row, item_pk) in by_key.items()
            if key not in seen
        ]
        # ignore_conflicts: a concurrent import of the same events must not fail the batch.
        Activity.objects.bulk_create(new, ignore_conflicts=True)
        # The items these words (or choices after a question) describe get their community
        # vector rebuilt by the pending-embeddings batch.
        worded = [activity.source_key for activity in new if has_community_words(activity)]
        if worded:
            community_mark_stale_for(
                activity_ids=list(Activity.objects.filter(source_key__in=worded).values_list("id", flat=True))
            )
        # Their interest vectors are rebuilt by the pending-embeddings batch, after the vectors
        # of these texts and items exist.
        User.objects.filter(id__in={activity.user_id for activity in new}, interest_stale=False).update(
            interest_stale=True
        )
    counts.created += len(new)
    counts.skipped += len(seen)
    return counts, rejections


def activity_record(
    *,
    user: User,
    kind: str,
    item: Item | None = None,
    text: str | None = None,
    rating: float | None = None,
    created_at: datetime | None = None,
    queue: bool = True,
) -> Activity:
    """Record one thing a person did or wrote; their vectors follow right after commit.

    The row is written first, always; the encoding happens in a task queued on commit, so a
    slow or absent encoder never loses what the person wrote. queue=False: the caller queues
    the work for many rows at once (activity_batch_record).
    """
    activity_kind_check(kind)
    if text is not None:
        text = text_clean(text, field="text", max_length=text_max_length()) or None
    activity_check(kind=kind, has_item=item is not None, has_text=text is not None, rating=rating)
    activity = Activity.objects.create(
        user=user,
        kind=kind,
        item=item,
        text=text,
        rating=rating,
        created_at=created_at or timezone.now(),
        text_hash=text_hash(text) if text else "",
        embedding_status=EmbeddingStatus.PENDING if text else EmbeddingStatus.NO_TEXT,
    )
    # A review, a tag, or a choice right after a question changes what the community says
    # about an item: the pending-embeddings batch (the sweep, every minute) rebuilds it.
    if has_community_words(activity):
        community_mark_stale_for(activity_ids=[activity.id])
    # Without a broker the text waits as pending and the person is marked stale: the sweep
    # embeds it and then rebuilds their interest vectors (core.queueing).
    if not queue:
        return activity
    # Their next recommendations read this write wherever it has arrived (core.replicas).
    replica_mark_written(user_id=user.id)
    if text:
        queue_on_commit(EMBED_ACTIVITY, row_id=activity.id, unqueued=lambda: _interest_mark_stale(user_id=user.id))
    else:
        queue_on_commit(REFRESH_USER_INTEREST, user_id=user.id, unqueued=lambda: _interest_mark_stale(user_id=user.id))
    return activity


def activity_batch_record(*, user: User, records: Sequence[Mapping]) -> list[Activity]:
    """Record several activities of one person at once, all or nothing (the API's batch).

    Their texts are encoded by one task on the bulk queue, then the person's interest once: up
    to 100 long texts are seconds of encoding, which must not delay another person's single
    review on the interactive queue. Keys of each record: activity_record's arguments.
    """
    with transaction.atomic():
        activities = [activity_record(user=user, queue=False, **record) for record in records]
        with_text = [activity.id for activity in activities if activity.text]
        mark = lambda: _interest_mark_stale(user_id=user.id)  # noqa: E731  # one callback for either task
        replica_mark_written(user_id=user.id)
        if with_text:
            queue_on_commit(EMBED_ACTIVITY_BATCH, row_ids=with_text, unqueued=mark)
        else:
            queue_on_commit(REFRESH_USER_INTEREST, user_id=user.id, unqueued=mark)
    return activities


def _interest_mark_stale(*, user_id: int) -> int:
    """The person's interest vectors are rebuilt by the next pending-embeddings batch."""
    return User.objects.filter(id=user_id, interest_stale=False).update(interest_stale=True)


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _item_ref(item: Item | None) -> dict | None:
    return None if item is None else {"id": item.id, "external_id": item.external_id, "title": item.title}


def user_data_export(*, user: User) -> dict:
    """Everything stored about one person, as JSON-ready data (the right of access).

    Profile, every activity with its text, the interest vectors built from them, their
    precomputed recommendation lists, every recommendation shown to them with its items, their
    feedback, their API tokens (never the secret itself), the answers kept for retries sent
    with an Idempotency-Key (copies of writes above, removed after their retention) and the
    sign-in lockout's record of wrong passwords tried for their username. Activity vectors are
    summarised per model: they are the texts above, encoded. The four recommender parts are read by the
    `_export_*` helpers below through the one named upward edge (tests/test_architecture.py
    ALLOWED_UPWARD): the right of access covers what the recommender stored about the person.
    """
    return {
        "format": "recommender-user-export/1",
        "exported_at": timezone.now().isoformat(),
        "profile": _export_profile(user),
        "activities": _export_activities(user),
        "activity_vectors": _export_activity_vectors(user),
        "community_text": _export_community_text(user),
        "helpful_votes": _export_helpful_votes(user),
        "interests": _export_interests(user),
        "precomputed_lists": _export_precomputed_lists(user),
        "recommendations": _export_recommendations(user),
        "feedback": _export_feedback(user),
        "api_tokens": _export_api_tokens(user),
        "idempotency_keys": _export_idempotency_keys(user),
        "failed_sign_ins": _export_failed_sign_ins(user),
    }


def _export_failed_sign_ins(user: User) -> list[dict]:
    """The sign-in lockout's rows under the person's username (users/login_guard.py): from where
    and with what browser someone tried a wrong password, and how often (kept for the cool-off)."""
    from axes.models import AccessAttempt

    attempts = AccessAttempt.objects.filter(username=user.get_username()).order_by("attempt_time", "id")
    return [
        {
            "last_attempt_at": _when(attempt.attempt_time),
            "ip_address": attempt.ip_address,
            "user_agent": attempt.user_agent,
            "path": attempt.path_info,
            "failures": attempt.failures_since_start,
        }
        for attempt in attempts
    ]


def _export_profile(user: User) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "external_id": user.external_id,
        "display_name": user.display_name,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_staff": user.is_staff,
        "date_joined": _when(user.date_joined),
        "last_login": _when(user.last_login),
    }


def _export_activities(user: User) -> list[dict]:
    activities = Activity.objects.filter(user=user).select_related("item").order_by("created_at", "id")
    return [
        {
            "id": activity.id,
            "kind": activity.kind,
            "item": _item_ref(activity.item),
            "text": activity.text,
            "rating": activity.rating,
            "created_at": _when(activity.created_at),
            "embedding_status": activity.embedding_status,
        }
        for activity in activities
    ]


def _export_activity_vectors(user: User) -> list[dict]:
    per_model = (
        ActivityVector.objects.filter(activity__user=user)
        .values("model_name")
        .annotate(count=Count("id"))
        .order_by("model_name")
    )
    return [{"model_name": row["model_name"], "count": row["count"]} for row in per_model]


def _export_community_text(user: User) -> list[dict]:
    """The items the person's words describe to others (users.community): their reviews, comments
    and tags, and the questions they chose an item after; and whether the item's community vector
    holds their words now (it is rebuilt by the worker after each change)."""
    from recommendations.models import CommunityVector  # the named upward edge: see user_data_export

    described = items_described_by(user_id=user.id)
    in_vector = set(
        CommunityVector.objects.filter(item_id__in=described, texts__contains=[{"user": user.id}])
        .values_list("item_id", flat=True)
        .distinct()
    )
    items = Item.objects.in_bulk(described)
    return [
        {"item": _item_ref(items[item_id]), "in_community_vector": item_id in in_vector}
        for item_id in sorted(described)
        if item_id in items
    ]


def _export_helpful_votes(user: User) -> list[dict]:
    """What the person said of other people's reviews and comments (helpful or not)."""
    votes = HelpfulVote.objects.filter(user=user).select_related("activity__item").order_by("created_at", "id")
    return [
        {
            "activity_id": vote.activity_id,
            "item": _item_ref(vote.activity.item),
            "helpful": vote.helpful,
            "created_at": _when(vote.created_at),
        }
        for vote in votes
    ]


def _export_interests(user: User) -> list[dict]:
    from recommendations.models import UserInterest  # the named upward edge: see user_data_export

    return [
        {
            "cluster": interest.cluster,
            "embedding_model": interest.embedding_model,
            "n_events": interest.n_events,
            "weight": interest.weight,
            "updated_at": _when(interest.updated_at),
            "vector": [float(value) for value in interest.embedding],
        }
        for interest in UserInterest.objects.filter(user=user).order_by("embedding_model", "cluster")
    ]


def _export_precomputed_lists(user: User) -> list[dict]:
    from recommendations.models import PrecomputedList  # the named upward edge: see user_data_export

    return [
        {
            "model_name": kept.model_name,
            "computed_at": _when(kept.computed_at),
            "ranker": kept.ranker,
            "items": [
                {"item_id": item_id, "score": score, "reason": reason}
                for item_id, score, reason in zip(kept.item_ids, kept.scores, kept.reasons, strict=True)
            ],
        }
        for kept in PrecomputedList.objects.filter(user=user).order_by("model_name")
    ]


def _export_recommendations(user: User) -> list[dict]:
    from recommendations.models import (  # the named upward edge: see user_data_export
        Recommendation,
        RecommendationContext,
    )

    # A staff look-up of the person is not something they saw (nor anything they did).
    recommendations = (
        Recommendation.objects.filter(user=user)
        .exclude(context=RecommendationContext.STAFF)
        .select_related("anchor_item")
        .prefetch_related("items__item")
        # The experiment arm the person was in (their answers' versions were chosen by it).
        .annotate(experiment_name=F("experiment__name"), arm_name=F("arm__name"))
        .order_by("created_at", "id")
    )
    return [
        {
            "id": str(recommendation.id),
            "context": recommendation.context,
            "query_text": recommendation.query_text,
            "anchor_item": _item_ref(recommendation.anchor_item),
            "experiment": recommendation.experiment_name,
            "arm": recommendation.arm_name,
            "created_at": _when(recommendation.created_at),
            "items": [
                {
                    "position": shown.position,
                    "item": _item_ref(shown.item),
                    "score": shown.score,
                    "sources": shown.sources,
                    "reason": shown.reason,
                    "impressed_at": _when(shown.impressed_at),
                    "clicked_at": _when(shown.clicked_at),
                    "dismissed_at": _when(shown.dismissed_at),
                }
                for shown in recommendation.items.all()
            ],
        }
        for recommendation in recommendations
    ]


def _export_feedback(user: User) -> list[dict]:
    from recommendations.models import Feedback  # the named upward edge: see user_data_export

    feedback = Feedback.objects.filter(user=user).select_related("item").order_by("created_at", "id")
    return [
        {
            "recommendation_id": str(row.recommendation_id),
            "item": _item_ref(row.item),
            "kind": row.kind,
            "created_at": _when(row.created_at),
        }
        for row in feedback
    ]


def _export_api_tokens(user: User) -> list[dict]:
    from rest_framework.authtoken.models import Token

    return [{"created": _when(token.created)} for token in Token.objects.filter(user=user)]


def _export_idempotency_keys(user: User) -> list[dict]:
    return [
        {
            "key": record.key,
            "method": record.method,
            "path": record.path,
            "status_code": record.status_code,
            "response": json.loads(record.response_body),
            "created_at": _when(record.created_at),
        }
        for record in IdempotencyRecord.objects.filter(user=user).order_by("created_at", "id")
    ]


def _user_session_keys(user_id: int) -> list[str]:
    """Keys of the database sessions that belong to this person.

    Django keeps the user id inside the signed, encoded session data, so each session is
    decoded; this reads the whole session table once, which is acceptable for a rare,
    person-initiated deletion (clearsessions keeps the table to live sessions).
    """
    from django.contrib.sessions.models import Session

    keys = []
    for session in Session.objects.only("session_key", "session_data").iterator(chunk_size=2_000):
        if str(session.get_decoded().get("_auth_user_id")) == str(user_id):
            keys.append(session.session_key)
    return keys


def _admin_log_anonymise(collector: Collector) -> int:
    """Strip the admin log rows about the person's own rows (their user row and everything that
    goes with it: activities, tokens, interests ...) of what names them: object_repr and the
    change message (which can quote an inline object's text). Who on the staff did what kind of
    change, to which kind of object and when, stays: the audit trail outlives the account.
    """
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    about_them = Q()
    for model, instances in collector.data.items():
        content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
        about_them |= Q(content_type=content_type, object_id__in=[str(instance.pk) for instance in instances])
    for queryset in collector.fast_deletes:
        content_type = ContentType.objects.get_for_model(queryset.model, for_concrete_model=False)
        text_ids = queryset.annotate(text_id=Cast("pk", CharField())).values("text_id")
        about_them |= Q(content_type=content_type, object_id__in=text_ids)
    if not about_them:
        return 0
    return LogEntry.objects.filter(about_them).update(object_repr=DELETED_ACCOUNT_REPR, change_message="")


def user_delete(*, user: User) -> None:
    """Delete the person and everything derived from them (the right to erasure).

    Activities and their vectors, interest vectors, recommendation logs with their items,
    feedback, API tokens and admin log entries they made go by cascade with the user row;
    sessions hold the user id only inside their encoded data, so they are found and deleted
    here; admin log entries about their rows are anonymised, and the sign-in lockout's rows
    under their username deleted, in the same transaction. The items their words described get
    their community vectors rebuilt without those words right after it (recommendations.vectors.
    community). A test (tests/api/test_account.py) searches every table for anything of the
    person left behind.
    """
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django.contrib.sessions.models import Session

    user_id = user.id
    # The items their words describe, and those of the texts they voted on: marked for the sweep
    # inside the transaction (a crash after it still heals), then rebuilt without their words and
    # votes right after it, in this same call.
    described = items_described_by(user_id=user_id) | set(
        HelpfulVote.objects.filter(user_id=user_id).values_list("activity__item_id", flat=True)
    )
    with transaction.atomic():
        community_mark_stale(item_ids=described)
        Session.objects.filter(session_key__in=_user_session_keys(user_id)).delete()
        for model in (AccessAttempt, AccessFailureLog, AccessLog):
            model.objects.filter(username=user.get_username()).delete()
        # Recommendations made for this person while anonymous cannot be told apart; those
        # logged for them signed in cascade from the user row. The collector is what
        # user.delete() runs: it names every row that goes, so the admin log can be cleaned first.
        collector = Collector(using=router.db_for_write(User), origin=user)
        collector.collect([user])
        anonymised = _admin_log_anonymise(collector)
        collector.delete()
    logger.info("deleted user=%s and their data (%d admin log entries anonymised)", user_id, anonymised)
    if described:
        _community_rebuild_without(user_id=user_id, item_ids=sorted(described))


def _community_rebuild_without(*, user_id: int, item_ids: list[int]) -> None:
    """The community vectors of the items a deleted person wrote about, rebuilt from the words
    left (stored passage vectors: no encoding unless a text had none yet). A failure leaves the
    items marked: the sweep rebuilds them; the deletion itself has committed and stands."""
    from recommendations.vectors.community import community_vectors_rebuild  # the named upward edge

    try:
        community_vectors_rebuild(item_ids=item_ids)
    except Exception:
        logger.exception("community vectors of user=%s's %d items left to the sweep", user_id, len(item_ids))


def activity_delete(*, activity: Activity) -> None:
    """Delete one of a person's activities (and its vectors); their interest is rebuilt after commit."""
    user_id = activity.user_id
    described = items_described_by(activity_ids=[activity.id]) if has_community_words(activity) else set()
    activity.delete()
    replica_mark_written(user_id=user_id)
    community_mark_stale(item_ids=described)
    queue_on_commit(REFRESH_USER_INTEREST, user_id=user_id, unqueued=lambda: _interest_mark_stale(user_id=user_id))


# The words others may find helpful or not: what a person wrote on an item for others to read.
VOTED_KINDS = (ActivityKind.REVIEW, ActivityKind.COMMENT)


def helpful_vote_record(*, user: User, activity_id: int, helpful: bool) -> HelpfulVote:
    """Record that `user` found someone else's review or comment helpful, or not; a second vote
    replaces the first. The item's community vector is rebuilt with the new count (the batch)."""
    activity = (
        Activity.objects.filter(id=activity_id, kind__in=VOTED_KINDS, item__isnull=False, text__isnull=False)
        .exclude(text="")
        .first()
    )
    if activity is None:
        raise NotFoundError("No review or comment with this id.")
    if activity.user_id == user.id:
        raise ApplicationError("you cannot vote on your own review or comment")
    item_id = activity.item_id
    assert item_id is not None  # filtered above
    with transaction.atomic():
        vote, created = HelpfulVote.objects.select_for_update().get_or_create(
            activity=activity, user=user, defaults={"helpful": helpful}
        )
        if not created and vote.helpful != helpful:
            vote.helpful = helpful
            vote.created_at = timezone.now()
            vote.save(update_fields=["helpful", "created_at"])
        elif not created:
            return vote  # the same vote again: nothing changes
        community_mark_stale(item_ids=[item_id])
    return vote


def helpful_counts(*, activity_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """(helpful, not helpful) votes of each of these texts that has any."""
    rows = (
        HelpfulVote.objects.filter(activity_id__in=activity_ids)
        .values("activity_id")
        .annotate(yes=Count("id", filter=Q(helpful=True)), no=Count("id", filter=Q(helpful=False)))
    )
    return {row["activity_id"]: (row["yes"], row["no"]) for row in rows}
