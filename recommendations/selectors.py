"""Reads for recommendations. Vector queries order by the exact expression of the model's
partial HNSW index (core.vector_indexes) and filter by its model, so the index serves them."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Least
from django.utils import timezone
from pgvector.django import CosineDistance, VectorField

from catalog.models import Item, ItemVector
from core.vector_wire import VectorBytes, vector_from_bytes
from recommendations.ml.encoder import model_dimensions
from recommendations.models import BehaviourModel, ItemStats


def cosine_distance_to(vector: Sequence[float] | np.ndarray, *, field: str = "embedding") -> CosineDistance:
    """Cosine distance in the form the per-model HNSW indexes are built on: embedding::vector(n)."""
    return CosineDistance(Cast(field, VectorField(dimensions=len(vector))), np.asarray(vector, dtype=np.float32))


@functools.lru_cache(maxsize=16)
def _model_dimensions(model_name: str) -> int | None:
    return model_dimensions(model_name)


def use_exact_search() -> bool:
    """Exact scan while the vector table is small: it is fast there and never misses.

    HNSW recall suffers on clustered catalogs (measured: a small cluster of help articles beside
    10,000 films was not found at ef_search 100 until the index was rebuilt); below
    EXACT_SEARCH_MAX_VECTORS rows an exact scan costs about 35 ms per 10,000 vectors here.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [ItemVector._meta.db_table])
        row = cursor.fetchone()
    estimate = row[0] if row else 0
    if estimate < 0:  # never analysed: count once rather than guess
        estimate = ItemVector.objects.count()
    return estimate <= settings.RECOMMENDER["EXACT_SEARCH_MAX_VECTORS"]


def filter_is_narrow(filters: ItemFilters) -> bool:
    """Whether a selective filter leaves at most EXACT_SEARCH_MAX_FILTERED items: then the
    exact scan of just those (through the filter's own index) is the plan. Through HNSW a
    filter that keeps 2% of a million items made the iterative scan visit tens of thousands of
    vectors and still miss some (recall@10 0.91, p50 287 ms, BENCHMARKS.md); the exact scan of
    those 20,000 never misses and took 158 ms.

    The planner's estimate, not a count: counting the 20,000 items of a category with the
    person's exclusions took 45-95 ms at 1M items, planning 2 ms. The exclusions are left out
    of the estimate: a few hundred ids, but the planner guesses that NOT IN (subquery) halves
    the rows."""
    if not filters.is_selective:
        return False
    broad = dataclasses.replace(filters, exclude_ids=frozenset())
    plan = json.loads(Item.objects.filter(broad.q()).explain(format="json"))
    return plan[0]["Plan"]["Plan Rows"] <= settings.RECOMMENDER["EXACT_SEARCH_MAX_FILTERED"]


def item_vectors_nearest(
    *,
    vector: Sequence[float] | np.ndarray,
    model_name: str,
    k: int,
    active_only: bool = True,
    where: Q | None = None,
    exact: bool = False,
) -> QuerySet[ItemVector]:
    """Item vectors of one model nearest to vector, nearest first: through the model's HNSW index
    (approximate), or with exact=True by a scan that cannot use it (uncast expression)."""
    expected = _model_dimensions(model_name)
    if expected is not None and expected != len(vector):
        raise ValueError(f"the query vector has {len(vector)} numbers, but {model_name} vectors have {expected}")
    vectors = ItemVector.objects.filter(model_name=model_name)
    if active_only:
        vectors = vectors.filter(item__is_active=True)
    if where is not None:
        vectors = vectors.filter(where)
    distance = (
        CosineDistance("embedding", np.asarray(vector, dtype=np.float32)) if exact else cosine_distance_to(vector)
    )
    # Annotated, not aliased: callers read the distance the ordering computed, not a second one.
    return vectors.annotate(distance=distance).order_by("distance")[:k]


# --- candidate sources: each returns [(item id, score)], best first ----------------------------


def id_array(ids) -> RawSQL:
    """`field__in=id_array(ids)`: the ids as one array parameter. A list of a few hundred ids as
    separate parameters costs Django and psycopg about 2 ms a query to build and split."""
    return RawSQL("SELECT unnest(%s::bigint[])", [sorted(ids)])  # noqa: S611 - one array parameter


@dataclass(frozen=True)
class ItemFilters:
    """What the caller allows: categories, tags (any of), a price range. Empty means no limit."""

    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    price_min: Decimal | None = None
    price_max: Decimal | None = None
    exclude_ids: frozenset[int] = field(default_factory=frozenset)
    # Only these items (a shelf of new arrivals, the cold items of an evaluation); empty: all.
    only_ids: frozenset[int] = field(default_factory=frozenset)

    def q(self, prefix: str = "") -> Q:
        # Inactive items and those staff banned from recommendations never pass.
        condition = Q(**{f"{prefix}is_active": True}) & ~Q(**{f"{prefix}placement": "banned"})
        if self.categories:
            condition &= Q(**{f"{prefix}category__in": self.categories})
        if self.tags:
            condition &= Q(**{f"{prefix}tags__overlap": list(self.tags)})
        if self.price_min is not None:
            condition &= Q(**{f"{prefix}price__gte": self.price_min})
        if self.price_max is not None:
            condition &= Q(**{f"{prefix}price__lte": self.price_max})
        if self.exclude_ids:
            condition &= ~Q(**{f"{prefix}id__in": id_array(self.exclude_ids)})
        if self.only_ids:
            condition &= Q(**{f"{prefix}id__in": id_array(self.only_ids)})
        return condition

    def excluding(self, ids) -> ItemFilters:
        """The same filters, also leaving out these items."""
        return dataclasses.replace(self, exclude_ids=frozenset(self.exclude_ids | set(ids)))

    @property
    def is_selective(self) -> bool:
        return bool(
            self.categories or self.tags or self.only_ids or self.price_min is not None or self.price_max is not None
        )


def active_behaviour_model_id() -> int | None:
    return BehaviourModel.objects.filter(is_active=True).values_list("id", flat=True).first()


def behaviour_scores(
    *,
    history: dict[int, float],
    recent: dict[int, float],
    filters: ItemFilters,
    liked: dict[int, float] | None = None,
    k: int,
    model_id: int | None,
    also: Sequence[int] = (),
) -> dict[int, tuple[int | None, float, float]]:
    """Behaviour evidence for the top k items and for `also`:
    {item: (rank or None, score, recent score, liked score)}.

    score = sum of neighbour weight x history weight over the person's items; the recent score
    sums over their latest items only (`recent`), which tells where their taste is going now;
    the liked score over the items they clearly liked (`liked`).
    One query: the same aggregate ranks the source's own candidates and scores the others'.
    """
    if model_id is None or not history:
        return {}
    # order_by(): without it Item's default ordering (by title) stays in the pasted subquery and
    # PostgreSQL sorts the whole catalog on every request (measured: 208 ms of a 608 ms request
    # at 100,000 items; 7.6 ms without).
    allowed = Item.objects.filter(filters.q()).order_by().values("id")
    allowed_sql, allowed_params = allowed.query.sql_with_params()
    item_ids = list(history)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH scores AS (
                SELECT neighbour.neighbour_id AS item_id,
                       SUM(neighbour.weight * history.weight) AS score,
                       SUM(neighbour.weight * history.recent) AS recent,
                       SUM(neighbour.weight * history.liked) AS liked
                FROM recommendations_itemneighbour AS neighbour
                JOIN unnest(%s::bigint[], %s::float8[], %s::float8[], %s::float8[])
                    AS history (item_id, weight, recent, liked)
                    ON neighbour.item_id = history.item_id
                WHERE neighbour.model_id = %s AND neighbour.neighbour_id IN ({allowed_sql})
                GROUP BY neighbour.neighbour_id
            ), ranked AS (
                SELECT item_id, score, recent, liked, row_number() OVER (ORDER BY score DESC, item_id) AS rank
                FROM scores
            )
            SELECT item_id, rank, score, recent, liked FROM ranked
            WHERE (rank <= %s AND score > 0) OR item_id = ANY(%s::bigint[])
            """,  # noqa: S608 - the subquery is Django's own SQL with its parameters
            [
                item_ids,
                [history[item_id] for item_id in item_ids],
                [recent.get(item_id, 0.0) for item_id in item_ids],
                [(liked or {}).get(item_id, 0.0) for item_id in item_ids],
                model_id,
                *allowed_params,
                k,
                list(also),
            ],
        )
        return {
            item_id: ((rank - 1) if rank <= k and score > 0 else None, float(score), float(recent), float(liked))
            for item_id, rank, score, recent, liked in cursor.fetchall()
        }


def item_popularity(*, item_ids: list[int], as_of=None) -> dict[int, tuple[float, float, float | None]]:
    """{item: (people who chose it, trending share, first interaction as Unix seconds)}.

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
            item_id: (popularity, trending / total, first.timestamp() if first else None)
            for item_id, popularity, trending, first in rows
        }
    half_life = settings.RECOMMENDER["TRENDING_HALF_LIFE_DAYS"] * 86_400
    window_start = as_of - timedelta(seconds=6 * half_life)
    table = Activity._meta.db_table
    decay = "power(0.5, extract(epoch FROM (%s - created_at)) / %s)"
    with connection.cursor() as cursor:
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
            item_id: (float(people), float(trending) / total, first.timestamp())
            for item_id, people, trending, first in cursor.fetchall()
        }


def behaviour_candidates(*, history: dict[int, float], filters: ItemFilters, k: int) -> list[tuple[int, float]]:
    """Items the active behaviour model links to the person's items, best first:
    sum of weight x history weight (the behaviour source's own proposals of behaviour_scores)."""
    scores = behaviour_scores(history=history, recent={}, filters=filters, k=k, model_id=active_behaviour_model_id())
    proposed = [
        (item_id, rank, score) for item_id, (rank, score, _recent, _liked) in scores.items() if rank is not None
    ]
    return [(item_id, score) for item_id, _rank, score in sorted(proposed, key=lambda row: row[1])]


def popular_candidates(*, filters: ItemFilters, k: int, by: str = "popularity") -> list[tuple[int, float]]:
    """Most popular (distinct people, all time) or trending (recency-weighted) active items."""
    rows = ItemStats.objects.filter(filters.q("item__")).order_by(f"-{by}", "item_id").values_list("item_id", by)[:k]
    return [(item_id, float(score)) for item_id, score in rows]


def fresh_candidates(*, filters: ItemFilters, k: int, days: int, now=None) -> list[tuple[int, float]]:
    """The newest active items of the last `days` days (exploration for items nobody has seen)."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    rows = (
        Item.objects.filter(filters.q(), created_at__gte=since, created_at__lte=now)
        .order_by("-created_at", "-id")
        .values_list("id", "created_at")[:k]
    )
    return [(item_id, created_at.timestamp()) for item_id, created_at in rows]


HNSW_EF_SEARCH_MAX = 1000


def _ef_search() -> int:
    return settings.RECOMMENDER["HNSW_EF_SEARCH"]


def semantic_candidates(
    *,
    vectors: list[np.ndarray],
    model_name: str,
    filters: ItemFilters,
    k: int,
    ef_search: int | None = None,
    exact: bool | None = None,
) -> list[tuple[int, float]]:
    """Items nearest to any of the vectors (interest themes or a query), by best cosine similarity.

    exact=None chooses the plan by the number of vectors the query can match: an exact scan for
    a small catalog (use_exact_search) or a narrow filter (filter_is_narrow), HNSW otherwise;
    False forces the HNSW index. A filter turns on pgvector's iterative index scan, so the HNSW
    search goes on until k rows pass the filter instead of returning the few that did among its
    first ef_search.
    """
    best: dict[int, float] = {}
    if exact is None:
        exact = use_exact_search() or filter_is_narrow(filters)
    with transaction.atomic(), connection.cursor() as cursor:
        # Breadth of the HNSW search for this query only (is_local: ends with the transaction).
        # pgvector accepts 1..1000; a deeper page than that reads the first 1000 candidates.
        breadth = min(max(ef_search or _ef_search(), k), HNSW_EF_SEARCH_MAX)
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(breadth)])
        if filters.is_selective or filters.exclude_ids:
            cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        if exact and len(vectors) > 1:
            # One scan for all the vectors: ordered by the nearest of their distances.
            rows = _nearest_to_any(vectors=vectors, model_name=model_name, k=k, where=filters.q("item__"))
        else:
            rows = [
                row
                for vector in vectors
                for row in item_vectors_nearest(
                    vector=vector, model_name=model_name, k=k, active_only=False, where=filters.q("item__"), exact=exact
                ).values_list("item_id", "distance")
            ]
        for item_id, distance in rows:
            best[item_id] = max(best.get(item_id, -1.0), 1.0 - float(distance))
    return sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))[:k]


def _nearest_to_any(*, vectors: list[np.ndarray], model_name: str, k: int, where: Q) -> list[tuple[int, float]]:
    expected = _model_dimensions(model_name)
    for vector in vectors:
        if expected is not None and expected != len(vector):
            raise ValueError(f"a query vector has {len(vector)} numbers, but {model_name} vectors have {expected}")
    distance = Least(*(CosineDistance("embedding", np.asarray(vector, dtype=np.float32)) for vector in vectors))
    return list(
        ItemVector.objects.filter(where, model_name=model_name)
        .annotate(distance=distance)
        .order_by("distance")
        .values_list("item_id", "distance")[:k]
    )


def item_vectors_for(*, item_ids: list[int], model_name: str) -> dict[int, np.ndarray]:
    rows = (
        ItemVector.objects.filter(item_id__in=id_array(item_ids), model_name=model_name)
        .annotate(raw=VectorBytes("embedding"))
        .values_list("item_id", "raw")
    )
    return {item_id: vector_from_bytes(raw) for item_id, raw in rows}


def item_stats_for(*, item_ids: list[int]) -> dict[int, tuple[float, float]]:
    rows = ItemStats.objects.filter(item_id__in=id_array(item_ids)).values_list("item_id", "popularity", "trending")
    return {item_id: (popularity, trending) for item_id, popularity, trending in rows}
