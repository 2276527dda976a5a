"""Reads for recommendations. Vector queries order by the exact expression of the model's
partial HNSW index (core.vector_indexes) and filter by its model, so the index serves them."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from django.db import connection, transaction
from django.db.models import FloatField, QuerySet
from django.db.models.functions import Cast
from pgvector.django import CosineDistance, VectorField

from catalog.models import ItemVector
from recommendations.ml.encoder import model_dimensions


def cosine_distance_to(vector: Sequence[float] | np.ndarray, *, field: str = "embedding") -> CosineDistance:
    """Cosine distance in the form the per-model HNSW indexes are built on: embedding::vector(n)."""
    return CosineDistance(Cast(field, VectorField(dimensions=len(vector))), np.asarray(vector, dtype=np.float32))


@functools.lru_cache(maxsize=16)
def _model_dimensions(model_name: str) -> int | None:
    return model_dimensions(model_name)


def item_vectors_nearest(
    *, vector: Sequence[float] | np.ndarray, model_name: str, k: int, active_only: bool = True
) -> QuerySet[ItemVector]:
    """Item vectors of one model nearest to vector (approximate, through HNSW), nearest first."""
    expected = _model_dimensions(model_name)
    if expected is not None and expected != len(vector):
        raise ValueError(f"the query vector has {len(vector)} numbers, but {model_name} vectors have {expected}")
    vectors = ItemVector.objects.filter(model_name=model_name)
    if active_only:
        vectors = vectors.filter(item__is_active=True)
    return vectors.alias(distance=cosine_distance_to(vector)).order_by("distance")[:k]


def item_similarities(
    *, vector: Sequence[float] | np.ndarray, model_name: str, k: int, ef_search: int = 100
) -> list[tuple[int, float]]:
    """(item id, cosine similarity) of the k nearest active items, most similar first."""
    with transaction.atomic(), connection.cursor() as cursor:
        # Breadth of the HNSW search for this query only (is_local: ends with the transaction).
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(max(ef_search, k))])
        rows = item_vectors_nearest(vector=vector, model_name=model_name, k=k).annotate(
            similarity=1 - Cast(cosine_distance_to(vector), FloatField())
        )
        return [(item_id, float(similarity)) for item_id, similarity in rows.values_list("item_id", "similarity")]
