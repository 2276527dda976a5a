"""The recommender benchmark's synthetic world, built in its database with the product's own
services (manage.py benchmark_recommender; BENCHMARKS.md "Recommender latency at scale").

N items in about 50 categories, each item a clustered 384-dimension unit vector (category
centre -> cluster centre -> item, the way real sentence embeddings group; uniformly random
vectors are a degenerate case for HNSW), people who buy and rate mostly inside one or two
clusters; then the HNSW index, the behaviour model and the interest vectors. Every random draw
comes from the catalog's seeded generator, in a fixed order: the same seed builds the same world.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import connection
from django.utils import timezone
from psycopg import sql

from catalog.models import Item, ItemVector
from core.models import EmbeddingStatus
from core.text import text_hash
from core.vector_indexes import vector_index_name, vector_indexes_ensure, vector_indexes_forget
from recommendations.ml.encoder import get_encoder
from users.models import Activity, ActivityKind, ActivityVector, User

DIMENSIONS = 384
CATEGORIES = 50
# Rows per INSERT of bulk_create: 5,000 items are about 2 MB of SQL, well under the server's
# limits, and few enough round trips that 100,000 items take seconds.
ITEM_BATCH = 5_000
# Vector rows per COPY chunk: about 35 MB of text (384 numbers of ~9 characters each).
COPY_CHUNK = 10_000

# A build step: its name, and what it runs; it returns what the run returned (and times it).
Step = Callable[[str, Callable[[], Any]], Any]


def unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)).astype(np.float32)


class SyntheticCatalog:
    """Clustered unit vectors: ~50 category centres sharing a common direction (real sentence
    embeddings are anisotropic), cluster centres around them, items around those. Measured on
    10,000 items: cosine 0.61 within a cluster, 0.34 within a category, 0.07 across."""

    def __init__(self, *, n_items: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        self.n_clusters = min(1000, max(200, n_items // 100), max(CATEGORIES, n_items // 10))
        common = unit(rng.standard_normal(DIMENSIONS))
        categories = unit(0.5 * common + unit(rng.standard_normal((CATEGORIES, DIMENSIONS))))
        self.cluster_category = np.arange(self.n_clusters) % CATEGORIES
        centres = unit(
            categories[self.cluster_category] + 0.9 * unit(rng.standard_normal((self.n_clusters, DIMENSIONS)))
        )
        # Uneven cluster sizes and item popularity (log-normal), as in real catalogs.
        sizes = rng.lognormal(0.0, 0.8, self.n_clusters)
        self.item_cluster = rng.choice(self.n_clusters, size=n_items, p=sizes / sizes.sum())
        self.vectors = np.empty((n_items, DIMENSIONS), dtype=np.float32)
        for start in range(0, n_items, 100_000):  # bounded temporary memory at 1M items
            stop = min(n_items, start + 100_000)
            noise = unit(rng.standard_normal((stop - start, DIMENSIONS), dtype=np.float32))
            self.vectors[start:stop] = unit(centres[self.item_cluster[start:stop]] + 0.8 * noise)
        self.appeal = rng.lognormal(0.0, 1.0, n_items)
        self.members = [np.flatnonzero(self.item_cluster == cluster) for cluster in range(self.n_clusters)]

    def category_of(self, index: int) -> str:
        return f"category-{self.cluster_category[self.item_cluster[index]]:02d}"

    def pick(self, cluster: int | None, size: int) -> np.ndarray:
        """Item indexes, popular ones more often: inside one cluster, or from anywhere."""
        pool = self.members[cluster] if cluster is not None else np.arange(len(self.vectors))
        if len(pool) == 0:
            pool = np.arange(len(self.vectors))
        weights = self.appeal[pool]
        return self.rng.choice(pool, size=size, p=weights / weights.sum())


@dataclass(frozen=True)
class SyntheticPerson:
    """What the measurements need of a person: their main category and the items they had
    (indexes into the catalog, in the order they had them). Kept as JSON for --reuse-database."""

    category: str
    item_indexes: list[int]


@dataclass(frozen=True)
class SyntheticWorld:
    """The built database's ids, and the generator that made it (its vectors are the floor's)."""

    model_name: str
    catalog: SyntheticCatalog
    item_ids: list[int]  # database id of each catalog index
    people: dict[int, SyntheticPerson]  # by user id


def synthetic_world_build(
    *, report: dict, n_items: int, n_people: int, seed: int, model_name: str, maintenance_work_mem: str, step: Step
) -> SyntheticWorld:
    """The whole build, step by step; report gets the figures of what was built."""
    from recommendations.retrieval.behaviour_build import behaviour_model_rebuild
    from recommendations.vectors.embedding import user_interest_refresh

    catalog = step("vectors_generate", lambda: SyntheticCatalog(n_items=n_items, seed=seed))
    report["clusters"] = catalog.n_clusters
    item_ids = step("items_insert", lambda: synthetic_items_insert(catalog=catalog, model_name=model_name))
    index_name = vector_index_name(ItemVector._meta.db_table, model_name)
    with connection.cursor() as cursor:
        # migrate made the index on the empty table; COPY into it would insert vector by vector.
        statement = sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(index_name))
        cursor.execute(statement.as_string(cursor.connection))
    step("vectors_copy", lambda: synthetic_vectors_copy(catalog=catalog, item_ids=item_ids, model_name=model_name))
    report["hnsw_index"] = _hnsw_index_build(
        index_name=index_name, model_name=model_name, maintenance_work_mem=maintenance_work_mem, step=step
    )
    people = step(
        "people_insert",
        lambda: synthetic_people_insert(catalog=catalog, item_ids=item_ids, n_people=n_people, model_name=model_name),
    )
    model = step("behaviour_model_rebuild", behaviour_model_rebuild)
    report["behaviour_model"] = {
        "algorithm": model.algorithm,
        "items": model.n_items,
        "neighbours": model.n_neighbours,
        "interactions": model.n_interactions,
    }
    step("encoder_load", lambda: get_encoder(model_name))
    step("interests_refresh", lambda: [user_interest_refresh(user_id=user_id) for user_id in people])
    step("vacuum_analyze", _vacuum_analyze)
    return SyntheticWorld(model_name=model_name, catalog=catalog, item_ids=item_ids, people=people)


def _hnsw_index_build(*, index_name: str, model_name: str, maintenance_work_mem: str, step: Step) -> dict:
    """The service's own index builder, with this session's memory for the graph; its size."""
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ItemVector._meta.db_table}")
        cursor.execute("SELECT set_config('maintenance_work_mem', %s, false)", [maintenance_work_mem])
    vector_indexes_forget()
    step("hnsw_index_build", lambda: vector_indexes_ensure(model_name=model_name, dimensions=DIMENSIONS))
    with connection.cursor() as cursor:
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute(
            "SELECT pg_relation_size(%s::regclass), pg_relation_size(%s::regclass)",
            [index_name, ItemVector._meta.db_table],
        )
        index_bytes, table_bytes = cursor.fetchone()
    return {
        "name": index_name,
        "megabytes": round(index_bytes / 2**20, 1),
        "vector_table_megabytes": round(table_bytes / 2**20, 1),
        "maintenance_work_mem": maintenance_work_mem,
    }


def _vacuum_analyze() -> None:
    # Statistics for the planner, and reltuples for use_exact_search (exact scan or HNSW).
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")


def synthetic_items_insert(*, catalog: SyntheticCatalog, model_name: str) -> list[int]:
    now = timezone.now()
    rows = []
    for index in range(len(catalog.vectors)):
        cluster = int(catalog.item_cluster[index])
        item = Item(
            external_id=f"bench-{index:07d}",
            title=f"Synthetic item {index}",
            category=catalog.category_of(index),
            tags=[f"cluster-{cluster:04d}"],
            price=Decimal(int(catalog.rng.integers(100, 20_000))) / 100,
            embedding_status=EmbeddingStatus.OK,
            embedding_model=model_name,
            embedded_at=now,
        )
        item.text_hash = text_hash(item.embedding_text())
        rows.append(item)
    created = Item.objects.bulk_create(rows, batch_size=ITEM_BATCH)
    ids = [item.pk for item in created]
    # Items arrived over two years (auto_now_add stamped them all now): the fresh source
    # then sees the last two weeks' share, as it would in a live catalog.
    ages = catalog.rng.uniform(0, 730 * 86_400, len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE catalog_item AS item SET created_at = new.created_at "
            "FROM unnest(%s::bigint[], %s::timestamptz[]) AS new (id, created_at) WHERE item.id = new.id",
            [ids, [now - timedelta(seconds=float(age)) for age in ages]],
        )
    return ids


def synthetic_vectors_copy(*, catalog: SyntheticCatalog, item_ids: list[int], model_name: str) -> None:
    vector_format = "[" + ",".join(["%.7g"] * DIMENSIONS) + "]"
    created_at = timezone.now().isoformat()
    hashes = dict(Item.objects.values_list("id", "text_hash"))
    table = ItemVector._meta.db_table
    columns = "item_id, model_name, dimensions, embedding, text_hash, created_at"
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for start in range(0, len(item_ids), COPY_CHUNK):
                buffer = io.StringIO()
                for index in range(start, min(start + COPY_CHUNK, len(item_ids))):
                    item_id = item_ids[index]
                    vector = vector_format % tuple(catalog.vectors[index].tolist())
                    buffer.write(f"{item_id}\t{model_name}\t{DIMENSIONS}\t{vector}\t{hashes[item_id]}\t{created_at}\n")
                copy.write(buffer.getvalue())


def synthetic_people_insert(
    *, catalog: SyntheticCatalog, item_ids: list[int], n_people: int, model_name: str
) -> dict[int, SyntheticPerson]:
    """People with 20-60 purchases and ratings, 85% inside one or two clusters, over a year;
    about a third also wrote a review or two (vectors near the item's, no encoder needed)."""
    users = User.objects.bulk_create(
        [User(username=f"bench-{number:06d}", password="!") for number in range(n_people)], batch_size=ITEM_BATCH
    )
    now = timezone.now()
    activities: list[Activity] = []
    reviews: list[tuple[Activity, np.ndarray]] = []
    people = {}
    for user in users:
        clusters, picks = _person_picks(catalog)
        activities += _person_activities(catalog, user=user, item_ids=item_ids, picks=picks, now=now)
        reviews += _person_reviews(catalog, user=user, item_ids=item_ids, picks=picks, now=now, model_name=model_name)
        people[user.pk] = SyntheticPerson(
            category=f"category-{catalog.cluster_category[clusters[0]]:02d}", item_indexes=picks
        )
    Activity.objects.bulk_create(activities + [activity for activity, _vector in reviews], batch_size=ITEM_BATCH)
    ActivityVector.objects.bulk_create(
        [
            ActivityVector(
                activity=activity,
                model_name=model_name,
                dimensions=DIMENSIONS,
                embedding=vector,
                text_hash=activity.text_hash,
                created_at=now,
            )
            for activity, vector in reviews
        ],
        batch_size=ITEM_BATCH,
    )
    return people


def _person_picks(catalog: SyntheticCatalog) -> tuple[list[int], list[int]]:
    """One person's clusters and the items they had (each once, in the order they had them)."""
    rng = catalog.rng
    clusters = [int(cluster) for cluster in rng.choice(catalog.n_clusters, size=rng.integers(1, 3))]
    count = int(rng.integers(20, 61))
    inside = int(round(count * 0.85))
    shares = [
        inside // len(clusters) + (1 if number < inside % len(clusters) else 0) for number in range(len(clusters))
    ]
    picks = np.concatenate(
        [catalog.pick(cluster, share) for cluster, share in zip(clusters, shares, strict=True)]
        + [catalog.pick(None, count - inside)]
    )
    rng.shuffle(picks)
    return clusters, list(dict.fromkeys(int(index) for index in picks))  # once per item


def _person_activities(
    catalog: SyntheticCatalog, *, user: User, item_ids: list[int], picks: list[int], now
) -> list[Activity]:
    """Purchases (60%) and ratings of the picked items, spread over the past year."""
    rng = catalog.rng
    moments = sorted(now - timedelta(seconds=float(age)) for age in rng.uniform(0, 365 * 86_400, len(picks)))
    activities = []
    for index, moment in zip(picks, moments, strict=True):
        if rng.random() < 0.6:
            kind, rating = ActivityKind.PURCHASE, None
        else:
            kind, rating = ActivityKind.RATING, float(rng.choice([3.0, 3.5, 4.0, 4.5, 5.0]))
        activities.append(
            Activity(
                user=user,
                kind=kind,
                item_id=item_ids[index],
                rating=rating,
                created_at=moment,
                embedding_status=EmbeddingStatus.NO_TEXT,
            )
        )
    return activities


def _person_reviews(
    catalog: SyntheticCatalog, *, user: User, item_ids: list[int], picks: list[int], now, model_name: str
) -> list[tuple[Activity, np.ndarray]]:
    """For about a third of the people, a review of their last item or two, with its vector."""
    rng = catalog.rng
    if rng.random() >= 0.33:
        return []
    reviews = []
    for index in picks[-int(rng.integers(1, 3)) :]:
        text = f"Synthetic review of item {index}: exactly what I was looking for"
        activity = Activity(
            user=user,
            kind=ActivityKind.REVIEW,
            item_id=item_ids[index],
            text=text,
            text_hash=text_hash(text),
            created_at=now - timedelta(seconds=float(rng.uniform(0, 30 * 86_400))),
            embedding_status=EmbeddingStatus.OK,
            embedding_model=model_name,
            embedded_at=now,
        )
        reviews.append((activity, unit(catalog.vectors[index] + 0.5 * unit(rng.standard_normal(DIMENSIONS)))))
    return reviews
