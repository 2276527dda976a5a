"""Recommender latency at scale (BENCHMARKS.md "Recommender latency at scale").

Builds a synthetic catalog in a database of its own (never the live one): N items in about 50
categories, each item a clustered 384-dimension unit vector (category centre -> cluster centre
-> item, the way real sentence embeddings group; uniformly random vectors are a degenerate case
for HNSW), people who buy and rate mostly inside one or two clusters, then the product's own
services build the HNSW index, the behaviour model and the interest vectors. In the same warm
process it times the services the API calls (recommend_for_user, recommend_for_text,
similar_items), the semantic selector through HNSW against an exact scan (recall@10, with and
without a one-category filter), and a numpy brute-force scan of the same vectors as the floor.
"""

from __future__ import annotations

import io
import json
import os
import platform
import random
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import Avg
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from psycopg import sql

from catalog.models import Item, ItemVector
from core.command_support import git_commit
from core.models import EmbeddingStatus
from core.text import text_hash
from core.vector_indexes import vector_index_name, vector_indexes_ensure, vector_indexes_forget
from recommendations.evaluation.databases import attached_database, isolated_database
from recommendations.evaluation.split import EvaluationError
from recommendations.ml.encoder import get_encoder, model_dimensions
from recommendations.models import PrecomputedList
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.semantic import semantic_candidates, use_exact_search
from recommendations.serving.service import recommend_for_text, recommend_for_user, similar_items
from users.models import Activity, ActivityKind, ActivityVector, User

DIMENSIONS = 384
CATEGORIES = 50
# Rows per INSERT of bulk_create: 5,000 items are about 2 MB of SQL, well under the server's
# limits, and few enough round trips that 100,000 items take seconds.
ITEM_BATCH = 5_000
# Vector rows per COPY chunk: about 35 MB of text (384 numbers of ~9 characters each).
COPY_CHUNK = 10_000
WARM_UP_CALLS = 5
# Slowest queries of one request kept in the report, and how much of each SQL is shown.
SLOW_QUERIES_SHOWN = 6
SQL_SHOWN = 240
# Requests whose queries are captured and grouped (Django times queries to the millisecond,
# and this machine is shared: one request alone is too noisy to say which query dominates).
PROFILED_REQUESTS = 10
PLAN_LINE_SHOWN = 300
QUERIES = [
    "waterproof boots for a winter hike",
    "my parcel has not arrived after ten days",
    "a documentary about rivers and wildlife",
    "how do I get a refund for a gift card",
    "lightweight laptop for travel with long battery life",
    "a quiet thriller set in a small town",
    "gift for a ten year old who likes science",
    "noise cancelling headphones for the office",
    "vegetarian cookbook with quick weeknight recipes",
    "the app logs me out every time I open it",
]


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)).astype(np.float32)


def _percentiles(latencies_ms: list[float]) -> dict:
    if not latencies_ms:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    p50, p99 = np.percentile(latencies_ms, [50, 99])
    return {"p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2), "n": len(latencies_ms)}


def _timed(calls: Iterable, run: Callable) -> list[float]:
    latencies = []
    for call in calls:
        started = time.perf_counter()
        run(call)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _shape(query: str) -> str:
    """A query without its literals (vectors, id arrays, numbers): queries of one kind share it."""
    query = re.sub(r"'[^']*'", "?", query)
    query = re.sub(r"\b\d+(\.\d+)?\b", "N", query)
    return " ".join(query.split())


def _recall_at(approximate: list[tuple[int, float]], exact: list[tuple[int, float]], k: int) -> float | None:
    truth = {item_id for item_id, _score in exact[:k]}
    if not truth:
        return None
    return len(truth & {item_id for item_id, _score in approximate[:k]}) / len(truth)


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(float(np.mean(present)), 4) if present else None


def _changed_paths() -> list[str]:
    """Uncommitted changes in the checkout the benchmark ran from (others may be editing it)."""
    try:
        return subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return []


def _table_megabytes(table: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s::regclass)", [table])
        return round(cursor.fetchone()[0] / 2**20, 2)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class SyntheticCatalog:
    """Clustered unit vectors: ~50 category centres sharing a common direction (real sentence
    embeddings are anisotropic), cluster centres around them, items around those. Measured on
    10,000 items: cosine 0.61 within a cluster, 0.34 within a category, 0.07 across."""

    def __init__(self, *, n_items: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        self.n_clusters = min(1000, max(200, n_items // 100), max(CATEGORIES, n_items // 10))
        common = _unit(rng.standard_normal(DIMENSIONS))
        categories = _unit(0.5 * common + _unit(rng.standard_normal((CATEGORIES, DIMENSIONS))))
        self.cluster_category = np.arange(self.n_clusters) % CATEGORIES
        centres = _unit(
            categories[self.cluster_category] + 0.9 * _unit(rng.standard_normal((self.n_clusters, DIMENSIONS)))
        )
        # Uneven cluster sizes and item popularity (log-normal), as in real catalogs.
        sizes = rng.lognormal(0.0, 0.8, self.n_clusters)
        self.item_cluster = rng.choice(self.n_clusters, size=n_items, p=sizes / sizes.sum())
        self.vectors = np.empty((n_items, DIMENSIONS), dtype=np.float32)
        for start in range(0, n_items, 100_000):  # bounded temporary memory at 1M items
            stop = min(n_items, start + 100_000)
            noise = _unit(rng.standard_normal((stop - start, DIMENSIONS), dtype=np.float32))
            self.vectors[start:stop] = _unit(centres[self.item_cluster[start:stop]] + 0.8 * noise)
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


class Command(BaseCommand):
    help = (
        "Benchmark the recommender at N synthetic items (clustered vectors) in an isolated database: index, "
        "behaviour model and interest build times; p50/p99 of recommend_for_user, recommend_for_text, "
        "similar_items; HNSW recall@10 against an exact scan, with and without a filter; a numpy scan as the floor."
    )

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, required=True)
        parser.add_argument("--people", type=int, default=1000)
        parser.add_argument("--requests", type=int, default=200)
        parser.add_argument("--database", default=None, help="isolated database (default: <live>_bench_<N>)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--maintenance-work-mem",
            default="1GB",
            help="for this session's HNSW build: the graph must fit in it or the build slows down many times",
        )
        parser.add_argument("--out", default=None, help="JSON report (default: var/benchmarks/recommender-<N>.json)")
        parser.add_argument("--keep-database", action="store_true", help="leave the database for EXPLAIN afterwards")
        parser.add_argument(
            "--recall-requests",
            type=int,
            default=None,
            help="people in the HNSW-against-exact comparison (default: --requests; at 1M items an exact scan "
            "without a filter takes about 4 s)",
        )
        parser.add_argument(
            "--reuse-database",
            action="store_true",
            help="measure again in the database an earlier --keep-database run built (same --items and --seed), "
            "skipping the build",
        )

    def handle(
        self, *args, items, people, requests, database, seed, maintenance_work_mem, out, keep_database, **options
    ):
        reuse_database = options["reuse_database"]
        if items < 2 * CATEGORIES or people < 1 or requests < 1:
            raise CommandError(f"need --items >= {2 * CATEGORIES}, --people >= 1 and --requests >= 1")
        self.model_name = settings.RECOMMENDER["SERVING_MODEL"] or settings.RECOMMENDER["ENCODER_MODEL"]
        if model_dimensions(self.model_name) != DIMENSIONS:
            raise CommandError(f"the serving model {self.model_name} does not make {DIMENSIONS}-dimension vectors")
        live = settings.DATABASES["default"]["NAME"]
        database = database or f"{live}_bench_{items}"
        report: dict = {
            "command": "manage.py benchmark_recommender "
            + f"--items {items} --people {people} --requests {requests} --seed {seed} "
            + f"--maintenance-work-mem {maintenance_work_mem}"
            + (f" --recall-requests {options['recall_requests']}" if options["recall_requests"] else "")
            + (" --reuse-database" if reuse_database else ""),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpu": _cpu_model(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_before": [round(value, 2) for value in os.getloadavg()],
            },
            "git_commit": git_commit(),
            "uncommitted_changes": _changed_paths(),
            "database": database,
            "items": items,
            "people": people,
            "requests": requests,
            "model": self.model_name,
            "settings": {
                key: settings.RECOMMENDER[key]
                for key in ("EXACT_SEARCH_MAX_VECTORS", "HNSW_EF_SEARCH", "CANDIDATES_PER_SOURCE", "HISTORY_ITEMS")
            },
            "build_seconds": {},
        }
        self.random = random.Random(seed)
        started = time.monotonic()
        build_file = Path(settings.VAR_DIR) / "benchmarks" / f"{database}.build.json"
        try:
            with attached_database(database) if reuse_database else isolated_database(database):
                if reuse_database:
                    self._restore(report, build_file, n_items=items, seed=seed)
                else:
                    self._build(
                        report, n_items=items, n_people=people, seed=seed, maintenance_work_mem=maintenance_work_mem
                    )
                    if keep_database:
                        self._save_build(report, build_file)
                # DEBUG (the development setting) makes every cursor record and format its SQL,
                # which a served process does not pay: measure without it.
                with override_settings(DEBUG=False):
                    self._measure(report, n_requests=requests, recall_requests=options["recall_requests"])
        except EvaluationError as error:
            raise CommandError(str(error)) from error
        finally:
            if not (keep_database or reuse_database):
                self._drop(database)
        report["total_seconds"] = round(time.monotonic() - started, 1)
        report["machine"]["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
        report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        path = Path(out) if out else Path(settings.VAR_DIR) / "benchmarks" / f"recommender-{items}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str))
        self.stdout.write(self._markdown(report))
        self.stdout.write(self.style.SUCCESS(f"written to {path}"))

    # --- building ---------------------------------------------------------------------------

    def _step(self, report: dict, name: str, run: Callable):
        self.stderr.write(f"{name}...")
        started = time.monotonic()
        result = run()
        report["build_seconds"][name] = round(time.monotonic() - started, 2)
        self.stderr.write(f"{name}: {report['build_seconds'][name]:.1f} s")
        return result

    def _build(self, report: dict, *, n_items: int, n_people: int, seed: int, maintenance_work_mem: str) -> None:
        from recommendations.retrieval.behaviour_build import behaviour_model_rebuild
        from recommendations.vectors.embedding import user_interest_refresh

        catalog = self._step(report, "vectors_generate", lambda: SyntheticCatalog(n_items=n_items, seed=seed))
        report["clusters"] = catalog.n_clusters
        self.item_ids = self._step(report, "items_insert", lambda: self._insert_items(catalog))
        index_name = vector_index_name(ItemVector._meta.db_table, self.model_name)
        with connection.cursor() as cursor:
            # migrate made the index on the empty table; COPY into it would insert vector by vector.
            statement = sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(index_name))
            cursor.execute(statement.as_string(cursor.connection))
        self._step(report, "vectors_copy", lambda: self._copy_vectors(catalog))
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {ItemVector._meta.db_table}")  # noqa: S608 - our own table name
            cursor.execute("SELECT set_config('maintenance_work_mem', %s, false)", [maintenance_work_mem])
        vector_indexes_forget()
        self._step(
            report, "hnsw_index_build", lambda: vector_indexes_ensure(model_name=self.model_name, dimensions=DIMENSIONS)
        )
        with connection.cursor() as cursor:
            cursor.execute("RESET maintenance_work_mem")
            cursor.execute(
                "SELECT pg_relation_size(%s::regclass), pg_relation_size(%s::regclass)",
                [index_name, ItemVector._meta.db_table],
            )
            index_bytes, table_bytes = cursor.fetchone()
        report["hnsw_index"] = {
            "name": index_name,
            "megabytes": round(index_bytes / 2**20, 1),
            "vector_table_megabytes": round(table_bytes / 2**20, 1),
            "maintenance_work_mem": maintenance_work_mem,
        }
        self.people = self._step(report, "people_insert", lambda: self._insert_people(catalog, n_people))
        model = self._step(report, "behaviour_model_rebuild", behaviour_model_rebuild)
        report["behaviour_model"] = {
            "algorithm": model.algorithm,
            "items": model.n_items,
            "neighbours": model.n_neighbours,
            "interactions": model.n_interactions,
        }
        self._step(report, "encoder_load", lambda: get_encoder(self.model_name))
        self._step(
            report,
            "interests_refresh",
            lambda: [user_interest_refresh(user_id=user_id) for user_id in self.people],
        )
        self._step(report, "vacuum_analyze", self._vacuum_analyze)
        self.catalog = catalog

    def _save_build(self, report: dict, path: Path) -> None:
        """What a later --reuse-database run needs: the build's figures and the people's picks."""
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = {key: report[key] for key in ("items", "clusters", "hnsw_index", "behaviour_model", "build_seconds")}
        kept["item_ids"] = self.item_ids
        kept["people"] = {str(user_id): person for user_id, person in self.people.items()}
        path.write_text(json.dumps(kept))

    def _restore(self, report: dict, path: Path, *, n_items: int, seed: int) -> None:
        if not path.is_file():
            raise CommandError(f"{path} is missing: build the database first with --keep-database")
        kept = json.loads(path.read_text())
        if kept["items"] != n_items:
            raise CommandError(f"that database holds {kept['items']} items, not {n_items}")
        for key in ("clusters", "hnsw_index", "behaviour_model", "build_seconds"):
            report[key] = kept[key]
        report["reused_database"] = True
        self.item_ids = kept["item_ids"]
        self.people = {int(user_id): person for user_id, person in kept["people"].items()}
        # The generator is deterministic: the same seed gives the same vectors the build wrote.
        self.catalog = SyntheticCatalog(n_items=n_items, seed=seed)

    def _vacuum_analyze(self) -> None:
        # Statistics for the planner, and reltuples for use_exact_search (exact scan or HNSW).
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE)")

    def _insert_items(self, catalog: SyntheticCatalog) -> list[int]:
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
                embedding_model=self.model_name,
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

    def _copy_vectors(self, catalog: SyntheticCatalog) -> None:
        vector_format = "[" + ",".join(["%.7g"] * DIMENSIONS) + "]"
        created_at = timezone.now().isoformat()
        hashes = dict(Item.objects.values_list("id", "text_hash"))
        table = ItemVector._meta.db_table
        columns = "item_id, model_name, dimensions, embedding, text_hash, created_at"
        with connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # noqa: S608 - our table
                for start in range(0, len(self.item_ids), COPY_CHUNK):
                    buffer = io.StringIO()
                    for index in range(start, min(start + COPY_CHUNK, len(self.item_ids))):
                        item_id = self.item_ids[index]
                        vector = vector_format % tuple(catalog.vectors[index].tolist())
                        buffer.write(
                            f"{item_id}\t{self.model_name}\t{DIMENSIONS}\t{vector}\t{hashes[item_id]}\t{created_at}\n"
                        )
                    copy.write(buffer.getvalue())

    def _insert_people(self, catalog: SyntheticCatalog, n_people: int) -> dict[int, dict]:
        """People with 20-60 purchases and ratings, 85% inside one or two clusters, over a year;
        about a third also wrote a review or two (vectors near the item's, no encoder needed)."""
        rng = catalog.rng
        users = User.objects.bulk_create(
            [User(username=f"bench-{number:06d}", password="!") for number in range(n_people)], batch_size=ITEM_BATCH
        )
        now = timezone.now()
        activities, reviews, people = [], [], {}
        for user in users:
            clusters = [int(cluster) for cluster in rng.choice(catalog.n_clusters, size=rng.integers(1, 3))]
            count = int(rng.integers(20, 61))
            inside = int(round(count * 0.85))
            shares = [
                inside // len(clusters) + (1 if number < inside % len(clusters) else 0)
                for number in range(len(clusters))
            ]
            picks = np.concatenate(
                [catalog.pick(cluster, share) for cluster, share in zip(clusters, shares, strict=True)]
                + [catalog.pick(None, count - inside)]
            )
            rng.shuffle(picks)
            picks = list(dict.fromkeys(int(index) for index in picks))  # once per item
            moments = sorted(now - timedelta(seconds=float(age)) for age in rng.uniform(0, 365 * 86_400, len(picks)))
            for index, moment in zip(picks, moments, strict=True):
                if rng.random() < 0.6:
                    kind, rating = ActivityKind.PURCHASE, None
                else:
                    kind, rating = ActivityKind.RATING, float(rng.choice([3.0, 3.5, 4.0, 4.5, 5.0]))
                activities.append(
                    Activity(
                        user=user,
                        kind=kind,
                        item_id=self.item_ids[index],
                        rating=rating,
                        created_at=moment,
                        embedding_status=EmbeddingStatus.NO_TEXT,
                    )
                )
            if rng.random() < 0.33:
                for index in picks[-int(rng.integers(1, 3)) :]:
                    text = f"Synthetic review of item {index}: exactly what I was looking for"
                    reviews.append(
                        (
                            Activity(
                                user=user,
                                kind=ActivityKind.REVIEW,
                                item_id=self.item_ids[index],
                                text=text,
                                text_hash=text_hash(text),
                                created_at=now - timedelta(seconds=float(rng.uniform(0, 30 * 86_400))),
                                embedding_status=EmbeddingStatus.OK,
                                embedding_model=self.model_name,
                                embedded_at=now,
                            ),
                            _unit(catalog.vectors[index] + 0.5 * _unit(rng.standard_normal(DIMENSIONS))),
                        )
                    )
            people[user.pk] = {
                "category": f"category-{catalog.cluster_category[clusters[0]]:02d}",
                "item_indexes": picks,
            }
        Activity.objects.bulk_create(activities + [activity for activity, _vector in reviews], batch_size=ITEM_BATCH)
        ActivityVector.objects.bulk_create(
            [
                ActivityVector(
                    activity=activity,
                    model_name=self.model_name,
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

    def _drop(self, database: str) -> None:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            cursor.execute(statement.as_string(cursor.connection))

    # --- measuring --------------------------------------------------------------------------

    def _measure(self, report: dict, *, n_requests: int, recall_requests: int | None) -> None:
        from recommendations.models import UserInterest

        rng = self.random
        user_ids = list(self.people)
        asked = [rng.choice(user_ids) for _ in range(n_requests)]
        users = User.objects.in_bulk(set(asked))
        anchors = Item.objects.in_bulk({rng.choice(self.item_ids) for _ in range(n_requests)})
        anchor_list = [anchors[item_id] for item_id in sorted(anchors)]
        rng.shuffle(anchor_list)
        texts = [QUERIES[number % len(QUERIES)] for number in range(n_requests)]
        encoder = get_encoder(self.model_name)
        report["semantic_search"] = "exact scan" if use_exact_search() else "HNSW"

        def for_user(user_id: int, *, precomputed_list: bool = True) -> None:
            recommend_for_user(user=users[user_id], k=20, precomputed_list=precomputed_list, log=False)

        def for_user_in_category(user_id: int, *, precomputed_list: bool = True) -> None:
            category = self.people[user_id]["category"]
            recommend_for_user(
                user=users[user_id],
                k=20,
                filters=ItemFilters(categories=(category,)),
                precomputed_list=precomputed_list,
                log=False,
            )

        def live(run: Callable) -> Callable:
            return lambda user_id: run(user_id, precomputed_list=False)

        # A person's first request computes their list (what the worker does after each of
        # their activities); timed once per person, before the requests that find it kept.
        PrecomputedList.objects.all().delete()
        distinct = list(dict.fromkeys(asked))
        operations = [
            ("recommend_for_user, computed live", asked, live(for_user)),
            ("recommend_for_user, one category (~2% of items), computed live", asked, live(for_user_in_category)),
            ("recommend_for_user, first request: list computed and kept", distinct, for_user),
            ("recommend_for_user, from the precomputed list", asked, for_user),
            ("recommend_for_user, one category, from the precomputed list", asked, for_user_in_category),
            ("recommend_for_text (encoder included)", texts, lambda text: recommend_for_text(text=text, log=False)),
            ("encoder alone, one text", texts, lambda text: encoder.encode([text])),
            ("similar_items", anchor_list, lambda item: similar_items(item=item, k=20, log=False)),
        ]
        results = {}
        for name, calls, run in operations:
            self.stderr.write(f"timing {name}...")
            if calls is not distinct:  # each person's first request happens once
                _timed(calls[:WARM_UP_CALLS], run)
            results[name] = _percentiles(_timed(calls, run))
        # Which one-category requests the kept list could answer (20 of its items in the
        # category, or a list holding every candidate); the others were computed live.
        categories = dict(Item.objects.filter(id__in=self.item_ids).values_list("id", "category"))
        kept = dict(PrecomputedList.objects.values_list("user_id", "item_ids"))
        answered = sum(
            1
            for user_id in asked
            if sum(categories.get(item_id) == self.people[user_id]["category"] for item_id in kept.get(user_id, ()))
            >= 20
        )
        report["precomputed_list"] = {
            "one_category_answered_from_list": f"{answered} of {len(asked)}",
            "lists": PrecomputedList.objects.count(),
            "mean_items": PrecomputedList.objects.aggregate(value=Avg("item_ids__len"))["value"],
            "table_megabytes": _table_megabytes(PrecomputedList._meta.db_table),
        }
        # Profiled now, while the lists timed above are fresh (the recall section below takes
        # minutes at 1M items, longer than RECOMMENDER_PRECOMPUTED_MAX_AGE).
        # Where a request's time goes: its queries grouped by shape over a few requests.
        sample = asked[:PROFILED_REQUESTS]
        report["queries_per_request"] = {
            "recommend_for_user, computed live": self._queries_of(live(for_user), sample),
            "recommend_for_user, one category, computed live": self._queries_of(live(for_user_in_category), sample),
            "recommend_for_user, from the precomputed list": self._queries_of(for_user, sample),
            "similar_items": self._queries_of(
                lambda item: similar_items(item=item, k=20, log=False), anchor_list[:PROFILED_REQUESTS]
            ),
        }

        # The semantic selector alone, HNSW against an exact scan, with the service's own
        # arguments: every interest vector, the seen items excluded, the service's breadth.
        interests: dict[int, list[np.ndarray]] = {}
        for user_id, vector in (
            UserInterest.objects.filter(user_id__in=set(asked)).order_by("cluster").values_list("user_id", "embedding")
        ):
            interests.setdefault(user_id, []).append(np.asarray(vector, dtype=np.float32))
        size = settings.RECOMMENDER["CANDIDATES_PER_SOURCE"] + 20
        recall: dict[str, dict] = {}
        compared = asked[: recall_requests or len(asked)]
        for label, with_category in (("no filter", False), ("one category (~2% of items)", True)):
            # False: through HNSW; True: an exact scan; None: the plan the service chooses.
            timings: dict[bool | None, list[float]] = {False: [], True: [], None: []}
            recalls_10, recalls_size, served_recalls_10 = [], [], []
            for position, user_id in enumerate(compared[:WARM_UP_CALLS] + compared):
                if user_id not in interests:
                    continue
                person = self.people[user_id]
                seen = frozenset(self.item_ids[index] for index in person["item_indexes"])
                filters = ItemFilters(
                    categories=(person["category"],) if with_category else (),
                    exclude_ids=seen,
                )
                answers = {}
                for exact in (False, True, None):
                    started = time.perf_counter()
                    answers[exact] = semantic_candidates(
                        vectors=interests[user_id], model_name=self.model_name, filters=filters, k=size, exact=exact
                    )
                    if position >= WARM_UP_CALLS:
                        timings[exact].append((time.perf_counter() - started) * 1000)
                if position < WARM_UP_CALLS:
                    continue
                recalls_10.append(_recall_at(answers[False], answers[True], 10))
                recalls_size.append(_recall_at(answers[False], answers[True], size))
                served_recalls_10.append(_recall_at(answers[None], answers[True], 10))
            results[f"semantic_candidates HNSW, {label}"] = _percentiles(timings[False])
            results[f"semantic_candidates exact scan, {label}"] = _percentiles(timings[True])
            results[f"semantic_candidates as the service chooses, {label}"] = _percentiles(timings[None])
            recall[label] = {
                "served_recall_at_10": _mean(served_recalls_10),
                "served_min_recall_at_10": min(
                    (value for value in served_recalls_10 if value is not None), default=None
                ),
                "recall_at_10": _mean(recalls_10),
                "min_recall_at_10": min((value for value in recalls_10 if value is not None), default=None),
                f"recall_at_{size}": _mean(recalls_size),
                "people": len(recalls_10),
            }

        # The floor: the same vectors as one float32 matrix in memory, top 20 by dot product
        # (unit vectors: cosine), for each person's main interest vector. With BLAS's two
        # threads and with one: on a busy machine the second thread's wake-up dominates.
        from threadpoolctl import threadpool_limits  # installed with scikit-learn

        matrix = self.catalog.vectors
        queries = [interests[user_id][0] for user_id in asked if user_id in interests]

        def numpy_top_20(query: np.ndarray) -> np.ndarray:
            scores = matrix @ query
            best = np.argpartition(-scores, 20)[:20]
            return best[np.argsort(-scores[best])]

        _timed(queries[:WARM_UP_CALLS], numpy_top_20)
        results["numpy scan, top 20 of one vector (floor)"] = _percentiles(_timed(queries, numpy_top_20))
        with threadpool_limits(limits=1):
            _timed(queries[:WARM_UP_CALLS], numpy_top_20)
            results["numpy scan, one BLAS thread"] = _percentiles(_timed(queries, numpy_top_20))
        report["latency"] = results
        report["recall_hnsw_against_exact"] = recall

    def _queries_of(self, run: Callable, calls: list) -> dict:
        """The queries of a few requests grouped by shape (literals removed), costliest first,
        with the plan of the costliest shape's slowest instance."""
        # The build ran with DEBUG's query log on: a full log (9,000 queries) captures nothing.
        connection.queries_log.clear()
        with CaptureQueriesContext(connection) as captured:
            total_ms = sum(_timed(calls, run))
        shapes: dict[str, dict] = {}
        for query in captured.captured_queries:
            milliseconds = float(query["time"]) * 1000
            shape = shapes.setdefault(_shape(query["sql"]), {"ms": 0.0, "count": 0, "slowest_ms": -1.0, "sql": ""})
            shape["ms"] += milliseconds
            shape["count"] += 1
            if milliseconds > shape["slowest_ms"]:
                shape["slowest_ms"], shape["sql"] = milliseconds, query["sql"]
        ranked = sorted(shapes.items(), key=lambda pair: -pair[1]["ms"])
        costliest = ranked[0][1]["sql"] if ranked else ""
        explainable = costliest.lstrip().upper().startswith(("SELECT", "WITH"))
        requests = len(calls)
        return {
            "requests": requests,
            "ms_per_request": round(total_ms / requests, 1),
            "sql_ms_per_request": round(sum(shape["ms"] for shape in shapes.values()) / requests, 1),
            "queries_per_request": round(len(captured.captured_queries) / requests, 1),
            "costliest": [
                {
                    "ms_per_request": round(shape["ms"] / requests, 2),
                    "per_request": round(shape["count"] / requests, 1),
                    "slowest_ms": round(shape["slowest_ms"], 2),
                    "sql": key[:SQL_SHOWN],
                }
                for key, shape in ranked[:SLOW_QUERIES_SHOWN]
            ],
            "costliest_plan": self._explain(costliest) if explainable else None,
        }

    def _explain(self, query: str) -> list[str]:
        """EXPLAIN ANALYZE with the settings the semantic selector uses inside its transaction
        (every personal request excludes the person's items, so the iterative scan is on)."""
        ef_search = max(settings.RECOMMENDER["HNSW_EF_SEARCH"], settings.RECOMMENDER["CANDIDATES_PER_SOURCE"] + 20)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef_search)])
            cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query)
            # Vector and id-array literals make plan lines kilobytes long; their start says enough.
            return [row[0][:PLAN_LINE_SHOWN] for row in cursor.fetchall()]

    # --- the report -------------------------------------------------------------------------

    def _markdown(self, report: dict) -> str:
        lines = [
            f"## {report['items']:,} items, {report['people']:,} people "
            f"({report['clusters']} clusters, semantic search: {report['semantic_search']})",
            "",
            "| operation | p50 ms | p99 ms | n |",
            "|---|---|---|---|",
        ]
        for name, figures in report["latency"].items():
            lines.append(f"| {name} | {figures['p50_ms']} | {figures['p99_ms']} | {figures['n']} |")
        kept = report["precomputed_list"]
        lines += [
            "",
            f"Precomputed lists: {kept['lists']} kept, {kept['mean_items']} items each, {kept['table_megabytes']} MB; "
            f"one-category requests answered from the list: {kept['one_category_answered_from_list']}",
        ]
        lines += [
            "",
            "| against an exact scan (semantic_candidates) | HNSW recall@10 (mean) | min "
            "| the service's plan: recall@10 | min | people |",
        ]
        lines.append("|---|---|---|---|---|---|")
        for label, figures in report["recall_hnsw_against_exact"].items():
            lines.append(
                f"| {label} | {figures['recall_at_10']} | {figures['min_recall_at_10']} "
                f"| {figures['served_recall_at_10']} | {figures['served_min_recall_at_10']} | {figures['people']} |"
            )
        lines += [
            "",
            "Build (seconds): " + ", ".join(f"{name} {value}" for name, value in report["build_seconds"].items()),
        ]
        index = report["hnsw_index"]
        lines.append(
            f"HNSW index {index['megabytes']} MB (vector table {index['vector_table_megabytes']} MB), "
            f"maintenance_work_mem {index['maintenance_work_mem']}; behaviour model: {report['behaviour_model']}"
        )
        for name, one in report["queries_per_request"].items():
            lines += [
                "",
                f"{name}: {one['ms_per_request']} ms a request over {one['requests']}, "
                f"{one['queries_per_request']} queries ({one['sql_ms_per_request']} ms in SQL); costliest:",
            ]
            lines += [
                f"- {query['ms_per_request']} ms ({query['per_request']}x): {query['sql'][:140]}"
                for query in one["costliest"][:3]
            ]
        lines.append(
            f"Load average before {report['machine']['load_average_before']}, "
            f"after {report['machine']['load_average_after']}"
        )
        return "\n".join(lines) + "\n"
