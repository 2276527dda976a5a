"""The popular, trending and fresh sources, and item popularity now or at a past moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Sum
from django.utils import timezone

from catalog.models import Item
from core.conf import recommender_settings
from core.replicas import read_connection
from recommendations.models import ItemStats
from recommendations.retrieval.filters import ItemFilters, id_array
from recommendations.retrieval.history import interaction_history


@dataclass(frozen=True)
class ItemPopularity:
    """How much one item is chosen, now or as of a past moment (the re-ranker's features)."""

    people: float  # distinct people who chose it
    trending_share: float  # its share of the catalog's recency-weighted interactions
    first_interaction_at: float | None  # Unix seconds; None: nobody has chosen it yet


@dataclass(frozen=True)
class StoredPopularity:
    """An item's popularity as ItemStats keeps it (rebuilt with the behaviour model)."""

    people: float  # distinct people who chose it
    trending: float  # recency-weighted interactions (not a share)


def item_popularity(*, item_ids: list[int], as_of: datetime | None = None) -> dict[int, ItemPopularity]:
    """The popularity of these items now (as_of None) or just before as_of.

    Now (as_of None): from ItemStats, rebuilt with the behaviour model. At a past moment (the
    re-ranker's training, an offline replay): from the activities before it, by the same
    definitions: distinct people; recency-weighted interactions (TRENDING_HALF_LIFE_DAYS, the
    last six half-lives) over the same sum for the whole catalog.
    """
    from users.models import Activity

    if as_of is None:
        rows = ItemStats.objects.filter(item_id__in=id_array(item_ids)).values_list(
            "item_id", "popularity", "trending", "first_interaction_at"
        )
        total = ItemStats.objects.aggregate(total=Sum("trending"))["total"] or 1.0
        return {
            item_id: ItemPopularity(
                people=popularity,
                trending_share=trending / total,
                first_interaction_at=first.timestamp() if first else None,
            )
            for item_id, popularity, trending, first in rows
        }
    half_life = recommender_settings().trending_half_life_days * 86_400
    if (history := interaction_history()) is not None:
        # Inside interactions_snapshot(): the same definitions over the interactions in memory.
        total, read = history.popularity(item_ids=item_ids, as_of=as_of, half_life_seconds=half_life)
        total = total or 1.0
        return {
            item_id: ItemPopularity(people=float(people), trending_share=trending / total, first_interaction_at=first)
            for item_id, (people, trending, first) in read.items()
        }
    window_start = as_of - timedelta(seconds=6 * half_life)
    table = Activity._meta.db_table
    decay = "power(0.5, extract(epoch FROM (%s - created_at)) / %s)"
    # kind <> 'dismiss' on rows with an item is users.models.BEHAVIOUR_KINDS (what ItemStats counts),
    # written as one comparison in this measured statement.
    with read_connection().cursor() as cursor:
        cursor.execute(
            f"SELECT COALESCE(SUM({decay}), 0) FROM {table} "  # noqa: S608 - table and expression are ours
            "WHERE item_id IS NOT NULL AND kind <> 'dismiss' AND created_at >= %s AND created_at < %s",
            [as_of, half_life, window_start, as_of],
        )
        total = float(cursor.fetchone()[0]) or 1.0
        cursor.execute(
            f"""
            SELECT item_id, COUNT(DISTINCT user_id),
                   COALESCE(SUM({decay}) FILTER (WHERE created_at >= %s), 0),
                   MIN(created_at)
            FROM {table}
            WHERE item_id = ANY(%s::bigint[]) AND kind <> 'dismiss' AND created_at < %s
            GROUP BY item_id
            """,  # noqa: S608 - table and expression are ours
            [as_of, half_life, window_start, list(item_ids), as_of],
        )
        return {
            item_id: ItemPopularity(
                people=float(people), trending_share=float(trending) / total, first_interaction_at=first.timestamp()
            )
            for item_id, people, trending, first in cursor.fetchall()
        }


def popular_candidates(*, filters: ItemFilters, k: int, by: str = "popularity") -> list[tuple[int, float]]:
    """Most popular (distinct people, all time) or trending (recency-weighted) active items."""
    rows = ItemStats.objects.filter(filters.q("item__")).order_by(f"-{by}", "item_id").values_list("item_id", by)[:k]
    return [(item_id, float(score)) for item_id, score in rows]


def fresh_candidates(
    *, filters: ItemFilters, k: int, days: int, now: datetime | None = None
) -> list[tuple[int, float]]:
    """The newest active items of the last `days` days (exploration for items nobody has seen)."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    rows = (
        Item.objects.filter(filters.q(), created_at__gte=since, created_at__lte=now)
        .order_by("-created_at", "-id")
        .values_list("id", "created_at")[:k]
    )
    return [(item_id, created_at.timestamp()) for item_id, created_at in rows]


def item_stats_for(*, item_ids: list[int]) -> dict[int, StoredPopularity]:
    rows = ItemStats.objects.filter(item_id__in=id_array(item_ids)).values_list("item_id", "popularity", "trending")
    return {item_id: StoredPopularity(people=popularity, trending=trending) for item_id, popularity, trending in rows}
