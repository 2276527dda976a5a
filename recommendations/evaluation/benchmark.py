"""The recommender benchmark's measurements (manage.py benchmark_recommender; BENCHMARKS.md).

In the warm process that built the synthetic world (recommendations.evaluation.benchmark_data),
it times the services the API calls (recommend_for_user live and from precomputed lists,
recommend_for_text, similar_items), groups a few requests' queries by shape with the plan of
the costliest, compares the semantic selector through HNSW with an exact scan (recall@10, with
and without a one-category filter), and times a numpy brute-force scan of the same vectors as
the floor. Each step writes its own part of the report.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from django.db import connection, transaction
from django.db.models import Avg
from django.test.utils import CaptureQueriesContext

from catalog.models import Item
from core.conf import recommender_settings
from recommendations.evaluation.benchmark_data import SyntheticWorld
from recommendations.ml.encoder import get_encoder
from recommendations.models import PrecomputedList
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.semantic import semantic_candidates, use_exact_search
from recommendations.serving.service import recommend_for_text, recommend_for_user, similar_items
from users.models import User

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
# The answers each personal request asks for.
PAGE = 20


def percentiles(latencies_ms: list[float]) -> dict:
    if not latencies_ms:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    p50, p99 = np.percentile(latencies_ms, [50, 99])
    return {"p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2), "n": len(latencies_ms)}


def timed(calls: Iterable, run: Callable) -> list[float]:
    latencies = []
    for call in calls:
        started = time.perf_counter()
        run(call)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def query_shape(query: str) -> str:
    """A query without its literals (vectors, id arrays, numbers): queries of one kind share it."""
    query = re.sub(r"'[^']*'", "?", query)
    query = re.sub(r"\b\d+(\.\d+)?\b", "N", query)
    return " ".join(query.split())


def recall_at(approximate: list[tuple[int, float]], exact: list[tuple[int, float]], k: int) -> float | None:
    truth = {item_id for item_id, _score in exact[:k]}
    if not truth:
        return None
    return len(truth & {item_id for item_id, _score in approximate[:k]}) / len(truth)


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(float(np.mean(present)), 4) if present else None


def _smallest(values: list[float | None]) -> float | None:
    return min((value for value in values if value is not None), default=None)


def table_megabytes(table: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s::regclass)", [table])
        return round(cursor.fetchone()[0] / 2**20, 2)


@dataclass(frozen=True)
class Requests:
    """What is asked, drawn once from the command's seeded generator (in this order)."""

    asked: list[int]  # user ids, one per request (people repeat)
    users: dict[int, User]
    anchors: list[Item]  # the items similar_items is asked about
    texts: list[str]


def _requests(world: SyntheticWorld, rng: random.Random, n_requests: int) -> Requests:
    user_ids = list(world.people)
    asked = [rng.choice(user_ids) for _ in range(n_requests)]
    users = User.objects.in_bulk(set(asked))
    anchors = Item.objects.in_bulk({rng.choice(world.item_ids) for _ in range(n_requests)})
    anchor_list = [anchors[item_id] for item_id in sorted(anchors)]
    rng.shuffle(anchor_list)
    texts = [QUERIES[number % len(QUERIES)] for number in range(n_requests)]
    return Requests(asked=asked, users=users, anchors=anchor_list, texts=texts)


class _PersonalCalls:
    """recommend_for_user as the benchmark asks it: with or without the person's category
    filter, from their precomputed list or computed live."""

    def __init__(self, world: SyntheticWorld, requests: Requests) -> None:
        self.world, self.users = world, requests.users

    def for_user(self, user_id: int, *, precomputed_list: bool = True) -> None:
        recommend_for_user(user=self.users[user_id], k=PAGE, precomputed_list=precomputed_list, log=False)

    def for_user_in_category(self, user_id: int, *, precomputed_list: bool = True) -> None:
        recommend_for_user(
            user=self.users[user_id],
            k=PAGE,
            filters=ItemFilters(categories=(self.world.people[user_id].category,)),
            precomputed_list=precomputed_list,
            log=False,
        )

    @staticmethod
    def live(run: Callable) -> Callable:
        return lambda user_id: run(user_id, precomputed_list=False)


def benchmark_measure(
    report: dict,
    world: SyntheticWorld,
    *,
    rng: random.Random,
    n_requests: int,
    recall_requests: int | None,
    say: Callable[[str], None],
) -> None:
    """Every measurement, in the order the report shows them (the profiles right after the
    service timings: they need the precomputed lists those made while still fresh)."""
    requests = _requests(world, rng, n_requests)
    encoder = get_encoder(world.model_name)
    report["semantic_search"] = "exact scan" if use_exact_search() else "HNSW"
    calls = _PersonalCalls(world, requests)
    results = _service_latencies(requests, calls, encoder=encoder, say=say)
    report["precomputed_list"] = _precomputed_list_figures(world, requests)
    report["queries_per_request"] = _query_profiles(requests, calls)
    interests = _interest_vectors(requests)
    recall = _semantic_recall(world, requests, interests, recall_requests=recall_requests, results=results)
    results.update(_numpy_floor(world, requests, interests))
    report["latency"] = results
    report["recall_hnsw_against_exact"] = recall


def _service_latencies(requests: Requests, calls: _PersonalCalls, *, encoder, say: Callable[[str], None]) -> dict:
    """p50/p99 of each service the API calls, after a few warm-up calls."""
    asked, live = requests.asked, calls.live
    # A person's first request computes their list (what the worker does after each of
    # their activities); timed once per person, before the requests that find it kept.
    PrecomputedList.objects.all().delete()
    distinct = list(dict.fromkeys(asked))
    operations: list[tuple[str, list, Callable]] = [
        ("recommend_for_user, computed live", asked, live(calls.for_user)),
        ("recommend_for_user, one category (~2% of items), computed live", asked, live(calls.for_user_in_category)),
        ("recommend_for_user, first request: list computed and kept", distinct, calls.for_user),
        ("recommend_for_user, from the precomputed list", asked, calls.for_user),
        ("recommend_for_user, one category, from the precomputed list", asked, calls.for_user_in_category),
        ("recommend_for_text (encoder included)", requests.texts, _for_text),
        ("encoder alone, one text", requests.texts, lambda text: encoder.encode([text], kind="query")),
        ("similar_items", requests.anchors, lambda item: similar_items(item=item, k=PAGE, log=False)),
    ]
    results = {}
    for name, asked_of, run in operations:
        say(f"timing {name}...")
        if asked_of is not distinct:  # each person's first request happens once
            timed(asked_of[:WARM_UP_CALLS], run)
        results[name] = percentiles(timed(asked_of, run))
    return results


def _for_text(text: str) -> None:
    recommend_for_text(text=text, log=False)


def _precomputed_list_figures(world: SyntheticWorld, requests: Requests) -> dict:
    """The lists kept, and which one-category requests they could answer (PAGE of their items
    in the category, or a list holding every candidate); the others were computed live."""
    categories = dict(Item.objects.filter(id__in=world.item_ids).values_list("id", "category"))
    kept = dict(PrecomputedList.objects.values_list("user_id", "item_ids"))
    answered = sum(
        1
        for user_id in requests.asked
        if sum(categories.get(item_id) == world.people[user_id].category for item_id in kept.get(user_id, ())) >= PAGE
    )
    return {
        "one_category_answered_from_list": f"{answered} of {len(requests.asked)}",
        "lists": PrecomputedList.objects.count(),
        "mean_items": PrecomputedList.objects.aggregate(value=Avg("item_ids__len"))["value"],
        "table_megabytes": table_megabytes(PrecomputedList._meta.db_table),
    }


def _query_profiles(requests: Requests, calls: _PersonalCalls) -> dict:
    """Where a request's time goes: its queries grouped by shape over a few requests. Profiled
    while the lists timed before are fresh (the recall section takes minutes at 1M items,
    longer than RECOMMENDER_PRECOMPUTED_MAX_AGE)."""
    sample = requests.asked[:PROFILED_REQUESTS]
    live = calls.live
    return {
        "recommend_for_user, computed live": query_profile(live(calls.for_user), sample),
        "recommend_for_user, one category, computed live": query_profile(live(calls.for_user_in_category), sample),
        "recommend_for_user, from the precomputed list": query_profile(calls.for_user, sample),
        "similar_items": query_profile(
            lambda item: similar_items(item=item, k=PAGE, log=False), requests.anchors[:PROFILED_REQUESTS]
        ),
    }


def _interest_vectors(requests: Requests) -> dict[int, list[np.ndarray]]:
    """Each asked person's interest vectors, main one first."""
    from recommendations.models import UserInterest

    interests: dict[int, list[np.ndarray]] = {}
    for user_id, vector in (
        UserInterest.objects.filter(user_id__in=set(requests.asked))
        .order_by("cluster")
        .values_list("user_id", "embedding")
    ):
        interests.setdefault(user_id, []).append(np.asarray(vector, dtype=np.float32))
    return interests


def _semantic_recall(
    world: SyntheticWorld,
    requests: Requests,
    interests: dict[int, list[np.ndarray]],
    *,
    recall_requests: int | None,
    results: dict,
) -> dict[str, dict]:
    """The semantic selector alone, HNSW against an exact scan, with the service's own
    arguments: every interest vector, the seen items excluded, the service's breadth. Its
    latencies go into results; the recall figures per filter are returned."""
    size = recommender_settings().candidates_per_source + PAGE
    recall: dict[str, dict] = {}
    compared = requests.asked[: recall_requests or len(requests.asked)]
    for label, with_category in (("no filter", False), ("one category (~2% of items)", True)):
        # False: through HNSW; True: an exact scan; None: the plan the service chooses.
        timings: dict[bool | None, list[float]] = {False: [], True: [], None: []}
        recalls_10, recalls_size, served_recalls_10 = [], [], []
        for position, user_id in enumerate(compared[:WARM_UP_CALLS] + compared):
            if user_id not in interests:
                continue
            person = world.people[user_id]
            filters = ItemFilters(
                categories=(person.category,) if with_category else (),
                exclude_ids=frozenset(world.item_ids[index] for index in person.item_indexes),
            )
            answers = {}
            for exact in (False, True, None):
                started = time.perf_counter()
                answers[exact] = semantic_candidates(
                    vectors=interests[user_id], model_name=world.model_name, filters=filters, k=size, exact=exact
                )
                if position >= WARM_UP_CALLS:
                    timings[exact].append((time.perf_counter() - started) * 1000)
            if position < WARM_UP_CALLS:
                continue
            recalls_10.append(recall_at(answers[False], answers[True], 10))
            recalls_size.append(recall_at(answers[False], answers[True], size))
            served_recalls_10.append(recall_at(answers[None], answers[True], 10))
        results[f"semantic_candidates HNSW, {label}"] = percentiles(timings[False])
        results[f"semantic_candidates exact scan, {label}"] = percentiles(timings[True])
        results[f"semantic_candidates as the service chooses, {label}"] = percentiles(timings[None])
        recall[label] = {
            "served_recall_at_10": _mean(served_recalls_10),
            "served_min_recall_at_10": _smallest(served_recalls_10),
            "recall_at_10": _mean(recalls_10),
            "min_recall_at_10": _smallest(recalls_10),
            f"recall_at_{size}": _mean(recalls_size),
            "people": len(recalls_10),
        }
    return recall


def _numpy_floor(world: SyntheticWorld, requests: Requests, interests: dict[int, list[np.ndarray]]) -> dict:
    """The floor: the same vectors as one float32 matrix in memory, top PAGE by dot product
    (unit vectors: cosine), for each person's main interest vector. With BLAS's two threads
    and with one: on a busy machine the second thread's wake-up dominates."""
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    matrix = world.catalog.vectors
    queries = [interests[user_id][0] for user_id in requests.asked if user_id in interests]

    def numpy_top(query: np.ndarray) -> np.ndarray:
        scores = matrix @ query
        best = np.argpartition(-scores, PAGE)[:PAGE]
        return best[np.argsort(-scores[best])]

    results = {}
    timed(queries[:WARM_UP_CALLS], numpy_top)
    results["numpy scan, top 20 of one vector (floor)"] = percentiles(timed(queries, numpy_top))
    with threadpool_limits(limits=1):
        timed(queries[:WARM_UP_CALLS], numpy_top)
        results["numpy scan, one BLAS thread"] = percentiles(timed(queries, numpy_top))
    return results


def query_profile(run: Callable, calls: list) -> dict:
    """The queries of a few requests grouped by shape (literals removed), costliest first,
    with the plan of the costliest shape's slowest instance."""
    # The build ran with DEBUG's query log on: a full log (9,000 queries) captures nothing.
    connection.queries_log.clear()
    with CaptureQueriesContext(connection) as captured:
        total_ms = sum(timed(calls, run))
    shapes: dict[str, dict] = {}
    for query in captured.captured_queries:
        milliseconds = float(query["time"]) * 1000
        shape = shapes.setdefault(query_shape(query["sql"]), {"ms": 0.0, "count": 0, "slowest_ms": -1.0, "sql": ""})
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
        "costliest_plan": _explain(costliest) if explainable else None,
    }


def _explain(query: str) -> list[str]:
    """EXPLAIN ANALYZE with the settings the semantic selector uses inside its transaction
    (every personal request excludes the person's items, so the iterative scan is on)."""
    ef_search = max(recommender_settings().hnsw_ef_search, recommender_settings().candidates_per_source + 20)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef_search)])
        cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query)
        # Vector and id-array literals make plan lines kilobytes long; their start says enough.
        return [row[0][:PLAN_LINE_SHOWN] for row in cursor.fetchall()]
