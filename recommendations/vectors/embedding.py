"""Writing vectors: items, activities and the interest vectors built from them.

Every function here is safe to run twice and safe to run concurrently: a row is skipped when
its vector was made by the current model from the current text (same hash), and a vector is
written only if the row's text did not change while it was being encoded (a conditional
update on the hash read before encoding); the newer text has its own task queued.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import numpy as np
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from catalog.models import Item, ItemVector
from core.conf import recommender_settings
from core.models import EmbeddingStatus, TextVector
from core.text import text_hash
from core.vector_indexes import vector_indexes_ensure
from core.vector_wire import VectorBytes, vector_from_bytes
from recommendations.ml.encoder import get_encoder
from recommendations.ml.model_cards import TextKind
from recommendations.models import CommunityVector, UserInterest
from recommendations.vectors.community import community_items_waiting, community_process_stale, served_vectors_apply
from recommendations.vectors.interest import Evidence, Interest, interests_build
from recommendations.vectors.text_model import (
    text_model_items_refresh,
    text_model_vectors_behind_count,
    text_model_vectors_catch_up,
)
from users.models import Activity, ActivityVector, User

# Where each embedded model keeps its vectors, and the name of the key to its row.
VECTOR_MODELS: dict[type[Item] | type[Activity], tuple[type[TextVector], str]] = {
    Item: (ItemVector, "item_id"),
    Activity: (ActivityVector, "activity_id"),
}

# How each model's text is encoded (ml/model_cards.py): an item is what a question searches
# (a passage); a person's own words search for items (queries), and build their interest vector.
TEXT_KINDS: dict[type[Item] | type[Activity], TextKind] = {Item: "passage", Activity: "query"}

# Errors worth retrying the whole task for: the database went away, it will come back.
DATABASE_OUTAGES = (OperationalError, InterfaceError)

logger = logging.getLogger(__name__)


def _needs_vector(row, text: str, model_name: str) -> bool:
    """False when the stored vector was made by this model from exactly this text."""
    return not (
        row.embedding_status == EmbeddingStatus.OK
        and row.embedding_model == model_name
        and row.text_hash == text_hash(text)
    )


def _write_vectors(model, rows: list[tuple[int, str, str]], vectors: np.ndarray, model_name: str) -> int:
    """rows: (id, hash read before encoding, hash of the encoded text). Returns rows written.

    One UPDATE marks the rows whose text is still the one encoded (the hash condition drops
    rows edited meanwhile); their vectors are then upserted, one per (row, model).
    """
    if not rows:
        return 0
    vector_model, foreign_key = VECTOR_MODELS[model]
    table = connection.ops.quote_name(model._meta.db_table)
    values = ", ".join(["(%s, %s, %s)"] * len(rows))
    parameters = [value for row in rows for value in row]
    now = timezone.now()
    vector_of = dict(zip((row_id for row_id, _read, _encoded in rows), vectors, strict=True))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} AS row SET
                embedding_model = %s, embedded_at = %s, embedding_status = %s, embedding_error = '',
                text_hash = new.hash_encoded
            FROM (VALUES {values}) AS new (id, hash_read, hash_encoded)
            WHERE row.id = new.id AND row.text_hash = new.hash_read
            RETURNING row.id, row.text_hash
            """,  # noqa: S608 - only the table name is interpolated, from the model's own metadata
            [model_name, now, EmbeddingStatus.OK, *parameters],
        )
        written = cursor.fetchall()
        # An item's vector of its catalog text is also kept apart (text_embedding): its served
        # vector adds the community's words (recommendations.vectors.community), recombined below.
        is_item = vector_model is ItemVector
        # _default_manager: Django's way to reach the manager of a model known only by its base class.
        vector_model._default_manager.bulk_create(
            [
                vector_model(
                    **{foreign_key: row_id},
                    model_name=model_name,
                    dimensions=len(vector_of[row_id]),
                    embedding=vector_of[row_id],
                    text_hash=written_hash,
                    created_at=now,
                    **({"text_embedding": vector_of[row_id]} if is_item else {}),
                )
                for row_id, written_hash in written
            ],
            update_conflicts=True,
            unique_fields=[foreign_key, "model_name"],
            update_fields=[
                "dimensions",
                "embedding",
                "text_hash",
                "created_at",
                *(["text_embedding"] if is_item else []),
            ],
        )
        if is_item:
            with_community = list(
                CommunityVector.objects.filter(
                    item_id__in=[row_id for row_id, _hash in written], model_name=model_name
                ).values_list("item_id", flat=True)
            )
            if with_community:
                served_vectors_apply(item_ids=with_community, model_name=model_name)
    return len(written)


def _embed(model, rows: list, texts: list[str]) -> tuple[list, int]:
    """Encode the rows that need it and write their vectors. Returns (rows encoded, written)."""
    encoder = get_encoder()
    todo = [(row, text) for row, text in zip(rows, texts, strict=True) if _needs_vector(row, text, encoder.name)]
    if not todo:
        return [], 0
    started = time.monotonic()
    vector_indexes_ensure(model_name=encoder.name, dimensions=encoder.dimensions)
    encoded = encoder.encode(
        [text for _row, text in todo], kind=TEXT_KINDS[model], batch_size=recommender_settings().encoder_batch_size
    )
    encoded_at = time.monotonic()
    written = _write_vectors(
        model, [(row.id, row.text_hash, text_hash(text)) for row, text in todo], encoded.vectors, encoder.name
    )
    logger.info(
        "%s embedded n=%d written=%d truncated=%d encode_ms=%d write_ms=%d",
        model._meta.label,
        len(todo),
        written,
        sum(encoded.truncated),
        (encoded_at - started) * 1000,
        (time.monotonic() - encoded_at) * 1000,
    )
    return [row for row, _text in todo], written


_STATE_FIELDS = ("id", "text_hash", "embedding_status", "embedding_model")


def item_embeddings_refresh(*, item_ids: Sequence[int]) -> int:
    """Embed the items whose vector is missing or stale; returns how many vectors were written.

    To re-embed unchanged text, clear its hash first (catalog.services.item_queue_reembedding).
    """
    items = list(Item.objects.filter(id__in=item_ids).only(*_STATE_FIELDS, "title", "description", "category", "tags"))
    encoded, written = _embed(Item, items, [item.embedding_text() for item in items])
    if written:
        # The active text model's vectors of these items follow their new served vectors.
        text_model_items_refresh(item_ids=[item.id for item in encoded])
    return written


def activity_embeddings_refresh(*, activity_ids: Sequence[int]) -> list[int]:
    """Embed the text activities that need it; returns the ids of the users whose words changed."""
    activities = [
        activity
        for activity in Activity.objects.filter(id__in=activity_ids).only(*_STATE_FIELDS, "user_id", "text")
        if activity.text
    ]
    encoded, _written = _embed(Activity, activities, [activity.text or "" for activity in activities])
    return sorted({activity.user_id for activity in encoded})


def embedding_mark_failed(*, model, ids: Sequence[int], error: str) -> int:
    """Make a final failure visible to staff instead of leaving the rows pending forever."""
    return (
        model.objects.filter(id__in=ids)
        .exclude(embedding_status=EmbeddingStatus.OK)
        .update(embedding_status=EmbeddingStatus.FAILED, embedding_error=error[:2000])
    )


def user_interests_compute(
    *,
    user_id: int,
    model_name: str,
    as_of: datetime | None = None,
    remembered: list[dict] | None = None,
    item_vectors_of: Callable[[set[int]], dict[int, np.ndarray]] | None = None,
) -> list[Interest]:
    """The person's interest vectors from their recent activities (before as_of, if given).

    `remembered`: those activities already read (the retrieval layer's in-memory snapshot of a
    past moment: id, kind, rating, created_at, item_id, with_text, newest first), with
    `item_vectors_of` reading item vectors the same way; else both come from the database."""
    config = recommender_settings()
    activities: list[dict]
    if remembered is not None and item_vectors_of is not None:
        activities = remembered
        item_vectors = item_vectors_of({activity["item_id"] for activity in activities if activity["item_id"]})
        written = [activity["id"] for activity in activities if activity["with_text"]]
    else:
        before = Activity.objects.filter(user_id=user_id)
        if as_of is not None:
            before = before.filter(created_at__lt=as_of)
        activities = [
            dict(row)
            for row in before.order_by("-created_at", "-id").values("id", "kind", "rating", "created_at", "item_id")[
                : config.interest_history
            ]
        ]
        item_vectors = {
            item_id: vector_from_bytes(raw)
            for item_id, raw in ItemVector.objects.filter(
                item_id__in={activity["item_id"] for activity in activities if activity["item_id"]},
                model_name=model_name,
            )
            .annotate(raw=VectorBytes("embedding"))
            .values_list("item_id", "raw")
        }
        written = [activity["id"] for activity in activities]
    text_vectors = (
        {
            activity_id: vector_from_bytes(raw)
            for activity_id, raw in ActivityVector.objects.filter(activity_id__in=written, model_name=model_name)
            .annotate(raw=VectorBytes("embedding"))
            .values_list("activity_id", "raw")
        }
        if written
        else {}
    )
    evidence = []
    for activity in activities:
        # A text activity is evidence through its own words; an item activity through the item.
        vector = text_vectors.get(activity["id"])
        if vector is None:
            vector = item_vectors.get(activity["item_id"])
        if vector is not None:
            evidence.append(Evidence(vector, activity["kind"], activity["rating"], activity["created_at"]))
    return interests_build(
        evidence,
        now=as_of or timezone.now(),
        half_life_days=config.interest_half_life_days,
        max_clusters=config.interest_max_clusters,
    )


def user_interest_refresh(*, user_id: int) -> int:
    """Rebuild the person's interest vectors from their recent activities; returns how many."""
    encoder = get_encoder()
    interests = user_interests_compute(user_id=user_id, model_name=encoder.name)
    with transaction.atomic():
        for cluster, interest in enumerate(interests):
            UserInterest.objects.update_or_create(
                user_id=user_id,
                embedding_model=encoder.name,
                cluster=cluster,
                defaults={
                    "embedding": interest.vector,
                    "dimensions": len(interest.vector),
                    "n_events": interest.n_events,
                    "weight": interest.weight,
                },
            )
        UserInterest.objects.filter(user_id=user_id, embedding_model=encoder.name, cluster__gte=len(interests)).delete()
    return len(interests)


# Rows per chunk of the pending-embeddings batch: one encoder call and one transaction each.
# 256 short item texts take about 0.7 s to encode on 2 cores (BENCHMARKS.md).
PENDING_CHUNK = 256
# Any constant unique to this job: only one pending-embeddings batch runs at a time.
PENDING_LOCK_KEY = 7_304_211


def _waiting(model_name: str) -> Q:
    return Q(embedding_status=EmbeddingStatus.PENDING) | (
        Q(embedding_status=EmbeddingStatus.OK) & ~Q(embedding_model=model_name)
    )


# How far back the sweep looks for texts embedded after their person's interest was last built.
# A task that died between the two (worker killed, retries given up in a database outage) is
# redelivered by Redis only after its visibility timeout, an hour: two hours cover it.
INTEREST_BEHIND_WINDOW = timedelta(hours=2)


def users_with_interest_behind(model_name: str) -> set[int]:
    """People with a recent embedded text newer than their interest vectors (or with none).

    The task after an activity embeds its text, then rebuilds the interest: a task that stopped
    in between leaves the text embedded, nobody marked, and the interest without it.
    """
    since = timezone.now() - INTEREST_BEHIND_WINDOW
    built_at = (
        UserInterest.objects.filter(user_id=OuterRef("user_id"), embedding_model=model_name)
        .order_by("-updated_at")
        .values("updated_at")[:1]
    )
    behind = (
        Activity.objects.filter(
            created_at__gte=since, embedding_status=EmbeddingStatus.OK, embedding_model=model_name, text__isnull=False
        )
        .annotate(interest_built_at=Subquery(built_at))
        .filter(Q(interest_built_at__isnull=True) | Q(created_at__gt=F("interest_built_at")))
        .values_list("user_id", flat=True)
    )
    return set(behind)


def embeddings_waiting_count() -> dict[str, int]:
    model_name = recommender_settings().encoder_model
    stale = set(User.objects.filter(interest_stale=True).values_list("id", flat=True))
    return {
        "items": Item.objects.filter(_waiting(model_name)).count(),
        "activities": Activity.objects.filter(_waiting(model_name)).count(),
        "users": len(stale | users_with_interest_behind(model_name)),
        "text_model_items": text_model_vectors_behind_count(),
        **community_items_waiting(model_name),
    }


def embeddings_process_pending(*, include_failed: bool = False, progress=None) -> dict[str, int]:
    """Embed every waiting item and activity, rebuild the community vectors of items marked
    stale, then the interests of people marked stale.

    Order matters: interests are built from item and text vectors, so those come first. A chunk
    that fails for a reason other than a database outage is marked failed and the batch goes on.
    Returns counts of what was done. Only one such batch runs at a time (advisory lock).
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [PENDING_LOCK_KEY])
        if not cursor.fetchone()[0]:
            logger.info("pending embeddings: another batch is running")
            return {"items": 0, "activities": 0, "users": 0, "failed": 0, "community": 0, "skipped_locked": 1}
    try:
        return _process_pending(include_failed=include_failed, progress=progress)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [PENDING_LOCK_KEY])


def _process_pending(*, include_failed: bool, progress) -> dict[str, int]:
    encoder = get_encoder()
    waiting = _waiting(encoder.name)
    if include_failed:
        waiting |= Q(embedding_status=EmbeddingStatus.FAILED)
    done = {"items": 0, "activities": 0, "users": 0, "failed": 0, "text_model_items": 0}
    for model, refresh, key in (
        (Item, lambda ids: item_embeddings_refresh(item_ids=ids), "items"),
        (Activity, lambda ids: activity_embeddings_refresh(activity_ids=ids), "activities"),
    ):
        ids = list(model.objects.filter(waiting).order_by("id").values_list("id", flat=True))
        for start in range(0, len(ids), PENDING_CHUNK):
            chunk = ids[start : start + PENDING_CHUNK]
            try:
                refresh(chunk)
                done[key] += len(chunk)
            except DATABASE_OUTAGES:
                raise
            except Exception as error:
                logger.exception("embedding chunk failed model=%s first_id=%s", model._meta.label, chunk[0])
                done["failed"] += embedding_mark_failed(
                    model=model, ids=chunk, error=f"{type(error).__name__}: {error}"
                )
            if progress:
                progress(key, len(chunk))
    Activity.objects.filter(embedding_status=EmbeddingStatus.PENDING, text__isnull=True).update(
        embedding_status=EmbeddingStatus.NO_TEXT
    )
    # What people wrote about items, once the texts have vectors (MiniLM reuses them) and before
    # the interests, which read the items' served vectors.
    done.update(community_process_stale(model_name=encoder.name, progress=progress))
    # Items whose text-model vector a stopped task left missing or stale (after the community
    # vectors: the text model adapts the served vector).
    done["text_model_items"] = text_model_vectors_catch_up()
    behind = users_with_interest_behind(encoder.name)
    if behind:
        User.objects.filter(id__in=behind, interest_stale=False).update(interest_stale=True)
    stale_users = list(User.objects.filter(interest_stale=True).order_by("id").values_list("id", flat=True))
    for user_id in stale_users:
        user_interest_refresh(user_id=user_id)
        User.objects.filter(id=user_id).update(interest_stale=False)
        done["users"] += 1
        if progress:
            progress("users", 1)
    return done
