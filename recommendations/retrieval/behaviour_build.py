"""Rebuilding the behaviour model and item statistics from the interactions in the database."""

from __future__ import annotations

import io
import logging
import time
from datetime import UTC, datetime

import numpy as np
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from core.conf import recommender_settings
from recommendations.models import BehaviourModel, ItemNeighbour, ItemStats
from recommendations.retrieval.behaviour_model import neighbours_build
from users.models import BEHAVIOUR_KINDS, Activity

logger = logging.getLogger(__name__)


def _interactions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = (
        Activity.objects.filter(item__isnull=False, kind__in=BEHAVIOUR_KINDS)
        .values_list("user_id", "item_id", "created_at")
        .order_by()
    )
    user_ids, item_ids, times = [], [], []
    for user_id, item_id, created_at in rows.iterator(chunk_size=20_000):
        user_ids.append(user_id)
        item_ids.append(item_id)
        times.append(created_at.timestamp())
    return np.array(user_ids, dtype=np.int64), np.array(item_ids, dtype=np.int64), np.array(times)


def _copy_rows(table: str, columns: list[str], rows) -> None:
    """COPY rows into table: 2 million neighbour rows take seconds, not minutes of INSERTs."""
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(str(value) for value in row) + "\n")
    buffer.seek(0)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            while data := buffer.read(1 << 20):
                copy.write(data)


def item_stats_rebuild(*, user_ids: np.ndarray, item_ids: np.ndarray, times: np.ndarray) -> int:
    """Popularity (distinct people) and trending (recency-weighted interactions) per item."""
    half_life = recommender_settings().trending_half_life_days * 86_400
    now = times.max() if len(times) else 0.0
    stats: dict[int, list] = {}
    pairs = set()
    for user_id, item_id, moment in zip(user_ids.tolist(), item_ids.tolist(), times.tolist(), strict=True):
        entry = stats.setdefault(item_id, [0, 0, 0.0, moment, moment])
        entry[0] += 1
        if (user_id, item_id) not in pairs:
            pairs.add((user_id, item_id))
            entry[1] += 1
        entry[2] += 0.5 ** ((now - moment) / half_life)
        entry[3] = max(entry[3], moment)
        entry[4] = min(entry[4], moment)
    updated_at = timezone.now().isoformat()
    with transaction.atomic():
        ItemStats.objects.all().delete()
        _copy_rows(
            ItemStats._meta.db_table,
            [
                "item_id",
                "n_interactions",
                "n_users",
                "popularity",
                "trending",
                "last_interaction_at",
                "first_interaction_at",
                "updated_at",
            ],
            (
                (item_id, count, users, float(users), trending, _iso(last), _iso(first), updated_at)
                for item_id, (count, users, trending, last, first) in stats.items()
            ),
        )
    return len(stats)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


def behaviour_model_rebuild(*, algorithm: str | None = None) -> BehaviourModel | None:
    """Learn a new item-to-item model from all interactions and make it the active one.

    The new version's rows are written beside the active one's, then the active flag moves in
    one transaction: requests never see a half-written model. Older versions are deleted.
    """
    user_ids, item_ids, times = _interactions()
    if len(item_ids) == 0:
        logger.info("behaviour model: no interactions yet")
        return None
    item_stats_rebuild(user_ids=user_ids, item_ids=item_ids, times=times)
    return behaviour_model_build(user_ids=user_ids, item_ids=item_ids, times=times, algorithm=algorithm)


def behaviour_model_build(
    *,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    times: np.ndarray,
    algorithm: str | None = None,
    activate: bool = True,
) -> BehaviourModel:
    """Learn a model version from these interactions; with activate=False it is written but not
    served (the re-ranker's training builds one from the past only, then deletes it)."""
    config = recommender_settings()
    started = time.monotonic()
    neighbours = neighbours_build(
        user_ids,
        item_ids,
        k=config.behaviour_neighbours,
        ease_regularisation=config.ease_regularisation,
        algorithm=algorithm or config.behaviour_algorithm,
    )
    latest_version = BehaviourModel.objects.aggregate(latest=Max("version"))["latest"] or 0
    model = BehaviourModel.objects.create(
        version=latest_version + 1,
        algorithm=neighbours.algorithm,
        n_users=len(np.unique(user_ids)),
        n_items=len(neighbours.item_ids),
        n_interactions=len(item_ids),
        n_neighbours=neighbours.matrix.nnz,
        trained_until=datetime.fromtimestamp(times.max(), tz=UTC),
    )
    matrix = neighbours.matrix.tocoo()
    ids = neighbours.item_ids
    _copy_rows(
        ItemNeighbour._meta.db_table,
        ["model_id", "item_id", "neighbour_id", "weight"],
        zip(
            [model.id] * matrix.nnz,
            ids[matrix.row].tolist(),
            ids[matrix.col].tolist(),
            matrix.data.tolist(),
            strict=True,
        ),
    )
    model.build_seconds = time.monotonic() - started
    if not activate:
        model.save(update_fields=["build_seconds"])
        return model
    with transaction.atomic():
        replaced = BehaviourModel.objects.filter(is_active=True).values_list("version", flat=True).first() or 0
        BehaviourModel.objects.filter(is_active=True).update(is_active=False)
        model.is_active = True
        model.save(update_fields=["is_active", "build_seconds"])
    # Older served versions go; an unserved one newer than the replaced version may be a
    # re-ranker training's model of the past, still in use: that training deletes it.
    BehaviourModel.objects.filter(version__lte=replaced).delete()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ItemNeighbour._meta.db_table}")
    logger.info(
        "behaviour model v%d active algorithm=%s seconds=%.1f", model.version, model.algorithm, model.build_seconds
    )
    return model
