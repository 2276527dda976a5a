import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection
from pgvector.django import CosineDistance

from catalog.models import Item


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_vector_extension_is_installed():
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cursor.fetchone()[0].startswith("0.8")


@pytest.mark.django_db
def test_vector_columns_have_fixed_dimensions_and_cosine_hnsw_indexes():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'catalog_item'::regclass AND attname = 'embedding'"
        )
        assert cursor.fetchone()[0] == "vector(384)"
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexdef ILIKE '%USING hnsw%' ORDER BY 1")
        indexes = dict(cursor.fetchall())
    assert set(indexes) == {"activity_embedding_hnsw", "item_embedding_hnsw", "user_interest_hnsw"}
    assert all("vector_cosine_ops" in definition for definition in indexes.values())


@pytest.mark.django_db
def test_cosine_top_k_query_uses_the_hnsw_index():
    random = np.random.default_rng(0)
    vectors = random.normal(size=(2_000, 384)).astype(np.float32)
    Item.objects.bulk_create(
        Item(external_id=f"item-{n}", title=f"Item {n}", embedding=vector) for n, vector in enumerate(vectors)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_item")

    query = random.normal(size=384).astype(np.float32)
    queryset = (
        Item.objects.filter(is_active=True).alias(distance=CosineDistance("embedding", query)).order_by("distance")[:20]
    )
    plan = queryset.explain()

    assert "item_embedding_hnsw" in plan, plan
    assert len(list(queryset)) == 20
