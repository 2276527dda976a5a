import numpy as np
import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from catalog.models import Item, ItemVector
from core.vector_indexes import VECTOR_TABLES, vector_index_name
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.semantic import item_vectors_nearest, semantic_candidates


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_vector_extension_is_installed():
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cursor.fetchone()[0].startswith("0.8")


@pytest.mark.django_db
def test_each_vector_table_has_a_cosine_hnsw_index_of_fixed_width_for_the_configured_model():
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename, indexdef FROM pg_indexes WHERE indexdef ILIKE '%USING hnsw%' ORDER BY 1")
        indexes = dict(cursor.fetchall())
    assert set(indexes) == set(VECTOR_TABLES)
    for definition in indexes.values():
        assert "vector_cosine_ops" in definition
        assert "(embedding)::vector(384)" in definition
        assert "'all-MiniLM-L6-v2'" in definition


@pytest.mark.django_db
def test_vectors_of_the_wrong_width_for_their_row_are_refused():
    item = Item.objects.create(external_id="a", title="A")

    with pytest.raises(IntegrityError), transaction.atomic():
        ItemVector.objects.create(
            item=item, model_name="m", dimensions=384, embedding=[0.1] * 3, text_hash="h", created_at=timezone.now()
        )


@pytest.mark.django_db
def test_cosine_top_k_query_uses_the_models_hnsw_index():
    random = np.random.default_rng(0)
    vectors = random.normal(size=(2_000, 384)).astype(np.float32)
    items = Item.objects.bulk_create(Item(external_id=f"item-{n}", title=f"Item {n}") for n in range(len(vectors)))
    now = timezone.now()
    ItemVector.objects.bulk_create(
        ItemVector(
            item=item, model_name="all-MiniLM-L6-v2", dimensions=384, embedding=vector, text_hash="h", created_at=now
        )
        for item, vector in zip(items, vectors, strict=True)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_itemvector")
        cursor.execute("ANALYZE catalog_item")

    query = random.normal(size=384).astype(np.float32)
    queryset = item_vectors_nearest(vector=query, model_name="all-MiniLM-L6-v2", k=20, active_only=False)
    plan = queryset.explain()

    assert vector_index_name("catalog_itemvector", "all-MiniLM-L6-v2") in plan, plan
    nearest = [
        item_id
        for item_id, _similarity in semantic_candidates(
            vectors=[query], model_name="all-MiniLM-L6-v2", filters=ItemFilters(), k=20, exact=False
        )
    ]
    exact = np.argsort(-(vectors @ query) / np.linalg.norm(vectors, axis=1))[:20]
    assert len(set(nearest) & {items[index].id for index in exact}) >= 18
