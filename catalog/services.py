from collections.abc import Sequence

from django.conf import settings
from django.db import transaction

from catalog.item_fields import ItemRow
from catalog.models import Item, Placement
from core.models import EmbeddingStatus
from core.queueing import EMBED_ITEM, EMBED_PENDING, queue_on_commit
from core.summaries import UpsertCounts

_UPSERT_FIELDS = ("title", "description", "category", "tags", "price", "attributes")


def item_bulk_upsert(
    *, rows: Sequence[ItemRow], reactivate: bool = True, queue_embedding: bool = False
) -> UpsertCounts:
    """Create or update items by external_id in one transaction.

    An item whose fields are unchanged is skipped (and keeps its vector); one whose text
    changed is marked pending so the encoder picks it up again. queue_embedding: queue the
    batch that embeds them after commit when any was created or changed (one API request);
    an import, which calls this per batch, queues once at its end (embeddings_pending_queue).
    """
    counts = UpsertCounts()
    with transaction.atomic():
        existing = {
            item.external_id: item
            for item in Item.objects.select_for_update().filter(external_id__in=[row.external_id for row in rows])
        }
        to_create, to_update = [], []
        for row in rows:
            item = existing.get(row.external_id)
            values = {name: getattr(row, name) for name in _UPSERT_FIELDS}
            if item is None:
                item = Item(external_id=row.external_id, **values)
                item.refresh_text_hash()
                to_create.append(item)
                continue
            changed = {name: value for name, value in values.items() if getattr(item, name) != value}
            if reactivate and not item.is_active:
                changed["is_active"] = True
            if not changed:
                counts.skipped += 1
                continue
            for name, value in changed.items():
                setattr(item, name, value)
            item.refresh_text_hash()
            to_update.append(item)
        Item.objects.bulk_create(to_create)
        if to_update:
            Item.objects.bulk_update(
                to_update, [*_UPSERT_FIELDS, "is_active", "text_hash", "embedding_status", "embedding_error"]
            )
        counts.created += len(to_create)
        counts.updated += len(to_update)
        if queue_embedding and (counts.created or counts.updated):
            queue_on_commit(EMBED_PENDING)
    return counts


def embeddings_pending_queue() -> bool:
    """After an import: queue the batch that embeds every pending row (items, texts, interests).

    Returns False, queueing nothing, when there is no broker: tasks would then run inside the
    importing command, and a large import would embed row by row there; the caller says how to
    run the batch instead.
    """
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return False
    queue_on_commit(EMBED_PENDING)
    return True


def item_queue_reembedding(*, item_ids: Sequence[int]) -> int:
    """Mark items pending and queue the batch that embeds them (even if their text is unchanged)."""
    queued = Item.objects.filter(id__in=item_ids).update(
        embedding_status=EmbeddingStatus.PENDING, embedding_error="", text_hash=""
    )
    queue_on_commit(EMBED_PENDING)
    return queued


def item_save(*, item: Item) -> Item:
    """Save one item edited by a person (admin, API); a text change queues its vector at once."""
    text_changed = item.refresh_text_hash() or item.embedding_status == EmbeddingStatus.PENDING
    item.save()
    if text_changed:
        queue_on_commit(EMBED_ITEM, row_id=item.pk)
    return item


def item_set_active(*, item_ids: Sequence[int], is_active: bool) -> int:
    return Item.objects.filter(id__in=item_ids).exclude(is_active=is_active).update(is_active=is_active)


def item_set_placement(*, item_ids: Sequence[int], placement: Placement | str) -> int:
    """Pin, ban or release items in recommendations; returns how many rows changed."""
    placement = Placement(placement)
    return Item.objects.filter(id__in=item_ids).exclude(placement=placement).update(placement=placement)
