import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.bundles import EventRow, Rejection
from catalog.models import Item
from core.exceptions import ApplicationError
from core.models import EmbeddingStatus
from core.summaries import UpsertCounts
from core.text import text_clean, text_hash
from users.models import ITEM_KINDS, RATING_MAX, RATING_MIN, TEXT_ONLY_KINDS, Activity, ActivityKind, User


def user_bulk_ensure(*, display_names: Mapping[str, str]) -> tuple[dict[str, int], UpsertCounts]:
    """Return {external_id: user pk} and counts, creating users that do not exist yet.

    Imported people get no usable password: they exist to carry their history. A display
    name given here replaces the stored one.
    """
    counts = UpsertCounts()
    with transaction.atomic():
        existing = {
            user.external_id: user
            for user in User.objects.select_for_update().filter(external_id__in=list(display_names))
        }
        to_create = []
        for external_id, display_name in display_names.items():
            user = existing.get(external_id)
            if user is None:
                user = User(username=external_id, external_id=external_id, display_name=display_name)
                user.set_unusable_password()
                to_create.append(user)
            elif display_name and user.display_name != display_name:
                user.display_name = display_name
                user.save(update_fields=["display_name"])
                counts.updated += 1
            else:
                counts.skipped += 1
        User.objects.bulk_create(to_create)
        counts.created = len(to_create)
        existing.update({user.external_id: user for user in to_create})
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
) -> Activity:
    """Record one thing a person did or wrote; their vectors follow right after commit.

    The row is written first, always; the encoding happens in a task queued on commit, so a
    slow or absent encoder never loses what the person wrote.
    """
    if kind not in ActivityKind.values:
        raise ApplicationError(f"unknown kind {kind!r}; expected one of {', '.join(ActivityKind.values)}")
    if text is not None:
        text = text_clean(text, field="text", max_length=settings.RECOMMENDER["MAX_TEXT_LENGTH"]) or None
    if kind in ITEM_KINDS and item is None:
        raise ApplicationError(f"kind {kind!r} needs an item")
    if kind in TEXT_ONLY_KINDS and text is None:
        raise ApplicationError(f"kind {kind!r} needs a text")
    if rating is not None and not RATING_MIN <= rating <= RATING_MAX:
        raise ApplicationError(f"rating must be between {RATING_MIN} and {RATING_MAX}")
    if kind == ActivityKind.RATING and rating is None:
        raise ApplicationError("kind 'rating' needs a rating")
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
    from recommendations.tasks import embed_activity, refresh_user_interest

    if text:
        transaction.on_commit(lambda: embed_activity.delay(row_id=activity.id))
    else:
        transaction.on_commit(lambda: refresh_user_interest.delay(user_id=user.id))
    return activity
