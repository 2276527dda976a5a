"""The semantic source: item vectors nearest to a person's interests or a query. Vector queries
order by the exact expression of the model's partial HNSW index (core.vector_indexes) and filter
by its model, so the index serves them."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypedDict

import numpy as np
from django.db import connections, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Cast, Least
from pgvector.django import CosineDistance, VectorField

from catalog.models import Item, ItemVector
from core.conf import recommender_settings
from core.replicas import read_alias, read_connection
from core.vector_wire import VectorBytes, vector_from_bytes
from recommendations.ml.encoder import model_dimensions
from recommendations.retrieval.filters import ItemFilters, id_array
from recommendations.retrieval.history import interaction_history

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _Distance(TypedDict):
    distance: float


def cosine_distance_to(vector: Sequence[float] | np.ndarray, *, field: str = "embedding") -> CosineDistance:
    """Cosine distance in the form the per-model HNSW indexes are built on: embedding::vector(n)."""
    return CosineDistance(Cast(field, VectorField(dimensions=len(vector))), np.asarray(vector, dtype=np.float32))


@functools.lru_cache(maxsize=16)
def model_dimensions_cached(model_name: str) -> int | None:
    return model_dimensions(model_name)


def use_exact_search() -> bool:
    """Exact scan while the vector table is small: it is fast there and never misses.

    HNSW recall suffers on clustered catalogs (measured: a small cluster of help articles beside
    10,000 films was not found at ef_search 100 until the index was rebuilt); below
    EXACT_SEARCH_MAX_VECTORS rows an exact scan costs about 35 ms per 10,000 vectors here.
    """
    with read_connection().cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [ItemVector._meta.db_table])
        row = cursor.fetchone()
    estimate = row[0] if row else 0
    if estimate < 0:  # never analysed: count once rather than guess
        estimate = ItemVector.objects.count()
    return estimate <= recommender_settings().exact_search_max_vectors


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
    return plan[0]["Plan"]["Plan Rows"] <= recommender_settings().exact_search_max_filtered


def item_vectors_nearest(
    *,
    vector: Sequence[float] | np.ndarray,
    model_name: str,
    k: int,
    active_only: bool = True,
    where: Q | None = None,
    exact: bool = False,
) -> QuerySet[WithAnnotations[ItemVector, _Distance]]:
    """Item vectors of one model nearest to vector, nearest first: through the model's HNSW index
    (approximate), or with exact=True by a scan that cannot use it (uncast expression)."""
    expected = model_dimensions_cached(model_name)
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


HNSW_EF_SEARCH_MAX = 1000


def _ef_search() -> int:
    return recommender_settings().hnsw_ef_search


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
    # On the database this request reads from (a replica inside core.replicas.replica_read).
    alias = read_alias()
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
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
    expected = model_dimensions_cached(model_name)
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


def item_vectors_for(*, item_ids: Iterable[int], model_name: str) -> dict[int, np.ndarray]:
    """The items' served vectors of one model (an item without one is left out). Inside
    interactions_snapshot() each is read once for the block (the re-ranker's training asks the
    same candidates' vectors person after person)."""
    if (history := interaction_history()) is not None:
        return history.item_vectors(item_ids=item_ids, model_name=model_name, read=_item_vectors_read)
    return _item_vectors_read(item_ids=item_ids, model_name=model_name)


def _item_vectors_read(*, item_ids: Iterable[int], model_name: str) -> dict[int, np.ndarray]:
    rows = (
        ItemVector.objects.filter(item_id__in=id_array(item_ids), model_name=model_name)
        .annotate(raw=VectorBytes("embedding"))
        .values_list("item_id", "raw")
    )
    return {item_id: vector_from_bytes(raw) for item_id, raw in rows}
