"""Offline evaluation of the served system (protocol P1 of ARCHITECTURE.md).

The bundle is split per person in time; only the train part is imported, into a database of
its own (never the live one); vectors, interests and the behaviour model are built by the
product's own services; then the SAME service the API calls (recommend_for_user) answers for
every person, and the answers are scored against the held-out part. Per-source ablations go
through that service too (its `sources` argument). The baselines (popularity, EASE with all
weights) are computed in numpy from the same split, only to prove the protocol matches the
reference figures; they are not the product.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.core.management import call_command
from django.db import connections

from catalog.bundles import BundleSource, EventRow, ItemRow, Rejection
from core.exceptions import ApplicationError
from users.models import INTERACTION_KINDS, ActivityKind

logger = logging.getLogger(__name__)


class EvaluationError(ApplicationError):
    pass


# --- metrics --------------------------------------------------------------------------------


def recall_at_k(ranked: list, relevant: set, k: int) -> float:
    """Hits in the top k over min(|relevant|, k): 1.0 is the best any ranking could do."""
    if not relevant:
        raise ValueError("recall needs at least one relevant item")
    return sum(1 for item in ranked[:k] if item in relevant) / min(len(relevant), k)


def ndcg_at_k(ranked: list, relevant: set, k: int) -> float:
    if not relevant:
        raise ValueError("NDCG needs at least one relevant item")
    dcg = sum(1.0 / math.log2(position + 2) for position, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(position + 2) for position in range(min(len(relevant), k)))
    return dcg / ideal


def reciprocal_rank(ranked: list, relevant: set, k: int) -> float:
    for position, item in enumerate(ranked[:k]):
        if item in relevant:
            return 1.0 / (position + 1)
    return 0.0


# --- the split ------------------------------------------------------------------------------


def _sort_key(row: EventRow) -> tuple:
    # Ties in time are broken by item id, numerically where ids are numbers (MovieLens movieId).
    item = row.item_id or ""
    return (row.timestamp, (0, int(item), "") if item.isdigit() else (1, 0, item))


@dataclass
class Split:
    train: list[EventRow]
    test: dict[str, set[str]]  # user id -> held-out item ids
    n_interactions: int
    fingerprint: str
    # user id -> the moment the service is asked as of: just after their last train event.
    cutoffs: dict[str, datetime] = field(default_factory=dict)


def split_per_user(
    events: Iterable[EventRow | Rejection], *, test_fraction: float = 0.2, test_last: int | None = None
) -> Split:
    """P1: per person, interactions sorted by (time, item id); the last 20% (at least 1) are test.

    Text events are kept for training when they come before the person's first test interaction.
    """
    interactions: dict[str, list[EventRow]] = defaultdict(list)
    texts: dict[str, list[EventRow]] = defaultdict(list)
    digest = hashlib.sha256()
    count = 0
    for row in events:
        if isinstance(row, Rejection):
            continue
        count += 1
        digest.update(f"{row.user_id}|{row.item_id}|{row.kind}|{row.timestamp.isoformat()}|{row.rating}\n".encode())
        if row.item_id and row.kind in INTERACTION_KINDS:
            interactions[row.user_id].append(row)
        else:
            texts[row.user_id].append(row)
    if not interactions:
        raise EvaluationError("the bundle has no interaction events to evaluate on")
    train: list[EventRow] = []
    test: dict[str, set[str]] = {}
    cutoffs: dict[str, datetime] = {}
    for user_id, rows in interactions.items():
        rows.sort(key=_sort_key)
        n_test = test_last if test_last is not None else max(1, math.ceil(len(rows) * test_fraction))
        if len(rows) <= n_test:
            train.extend(rows)  # nothing to learn from: this person is not evaluated
            continue
        head, tail = rows[: len(rows) - n_test], rows[len(rows) - n_test :]
        train.extend(head)
        test[user_id] = {row.item_id for row in tail}
        cutoffs[user_id] = head[-1].timestamp + timedelta(microseconds=1)
        split_point = _sort_key(tail[0])
        train.extend(row for row in texts.get(user_id, []) if _sort_key(row) < split_point)
    for user_id, rows in texts.items():
        if user_id not in interactions:
            train.extend(rows)
    return Split(
        train=train,
        test=test,
        n_interactions=sum(map(len, interactions.values())),
        fingerprint=digest.hexdigest()[:16],
        cutoffs=cutoffs,
    )


# --- an isolated database -------------------------------------------------------------------


@contextmanager
def isolated_database(name: str):
    """Point the default connection at a fresh database `name` on the same server, migrated."""
    from psycopg import sql

    def create(cursor) -> None:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        cursor.execute(drop.as_string(cursor.connection))
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)).as_string(cursor.connection))

    with _default_database(name, prepare=create):
        yield


@contextmanager
def attached_database(name: str):
    """Point the default connection at an existing database `name` (kept by an earlier run), migrated."""

    def check(cursor) -> None:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            raise EvaluationError(f"database {name} does not exist")

    with _default_database(name, prepare=check):
        yield


@contextmanager
def _default_database(name: str, *, prepare):
    """The default connection on database `name` (after `prepare` ran on the live one), migrated;
    back on the live database afterwards."""
    default = connections["default"]
    original = default.settings_dict["NAME"]
    if name == original:
        raise EvaluationError("the evaluation database must not be the live one")
    default.ensure_connection()
    with default.cursor() as cursor:
        prepare(cursor)
    default.close()
    default.settings_dict["NAME"] = name
    try:
        call_command("migrate", verbosity=0, interactive=False)
        yield
    finally:
        default.close()
        default.settings_dict["NAME"] = original


# --- running it -----------------------------------------------------------------------------


@dataclass
class MethodResult:
    name: str
    recall: float
    ndcg: float
    mrr: float
    coverage: float
    latency_ms: list[float] = field(default_factory=list)
    per_key_ndcg: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        latency = np.array(self.latency_ms) if self.latency_ms else np.array([0.0])
        return {
            "method": self.name,
            "recall": round(self.recall, 4),
            "ndcg": round(self.ndcg, 4),
            "mrr": round(self.mrr, 4),
            "coverage": round(self.coverage, 4),
            "latency_p50_ms": round(float(np.percentile(latency, 50)), 1),
            "latency_p99_ms": round(float(np.percentile(latency, 99)), 1),
        }


def score_rankings(
    name: str,
    rankings: dict[str, list[str]],
    split: Split,
    *,
    k: int,
    n_items: int,
    latency_ms: list[float] | None = None,
) -> MethodResult:
    recalls, ndcgs, rrs = [], [], []
    per_key: dict[str, float] = {}
    shown: set[str] = set()
    for user_id, relevant in split.test.items():
        ranked = rankings.get(user_id, [])
        recalls.append(recall_at_k(ranked, relevant, k))
        ndcgs.append(ndcg_at_k(ranked, relevant, k))
        per_key[user_id] = ndcgs[-1]
        rrs.append(reciprocal_rank(ranked, relevant, k))
        shown.update(ranked[:k])
    return MethodResult(
        name,
        float(np.mean(recalls)),
        float(np.mean(ndcgs)),
        float(np.mean(rrs)),
        len(shown) / max(n_items, 1),
        latency_ms or [],
        per_key,
    )


def baseline_rankings(split: Split, item_ids: list[str], *, k: int, ease_regularisation: float) -> dict[str, dict]:
    """Popularity and EASE (all weights) on the train split, in numpy: the protocol check."""
    from recommendations.behaviour import interaction_matrix

    interactions = [row for row in split.train if row.item_id and row.kind in INTERACTION_KINDS]
    users = sorted({row.user_id for row in interactions})
    user_index = {user_id: index for index, user_id in enumerate(users)}
    item_index = {item_id: index for index, item_id in enumerate(item_ids)}
    matrix = interaction_matrix(
        np.array([user_index[row.user_id] for row in interactions]),
        np.array([item_index[row.item_id] for row in interactions]),
        len(users),
        len(item_ids),
    )
    popularity = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)
    gram = (matrix.T @ matrix).toarray().astype(np.float64)
    gram[np.diag_indices(len(item_ids))] += ease_regularisation
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)[None, :]
    weights[np.diag_indices(len(item_ids))] = 0.0
    results: dict[str, dict] = {"popularity": {}, "EASE (all weights, numpy)": {}}
    for user_id in split.test:
        row = user_index.get(user_id)
        seen = matrix[row].indices if row is not None else np.array([], dtype=int)
        for name, scores in (
            ("popularity", popularity.copy()),
            (
                "EASE (all weights, numpy)",
                np.asarray(matrix[row] @ weights).ravel() if row is not None else np.zeros(len(item_ids)),
            ),
        ):
            scores[seen] = -np.inf
            top = np.argsort(-scores, kind="stable")[:k]
            results[name][user_id] = [item_ids[index] for index in top]
    return results


def _in_memory_source(source: BundleSource, items: list[ItemRow], events: list[EventRow]) -> BundleSource:
    return BundleSource(
        items_file=source.items_file,
        users_file=None,
        events_file="evaluation events",
        items=lambda: iter(items),
        users=lambda: iter(()),
        events=lambda: iter(events),
    )


def _build(
    source: BundleSource,
    timings: dict[str, float],
    *,
    ranker: bool = False,
    progress: Callable[[Iterable, str], Iterable] = lambda rows, description: rows,
) -> None:
    """Everything the served system needs, made by the product's own services: the same
    functions the Celery tasks run (import, vectors, behaviour model, re-ranker training)."""
    from catalog.bundle_import import bundle_import
    from recommendations.behaviour_services import behaviour_model_rebuild
    from recommendations.embedding import embeddings_process_pending
    from recommendations.ranking import RankerError, ranker_train

    def train_ranker() -> None:
        try:
            ranker_train(progress=progress)
        except RankerError as error:
            # Too little to learn from (a tiny bundle): the service answers with its blend,
            # as it would in production, and the report names what served.
            logger.warning("no re-ranker for this evaluation: %s", error)

    steps = [
        ("import", lambda: bundle_import(source=source)),
        ("vectors", embeddings_process_pending),
        ("behaviour_model", behaviour_model_rebuild),
    ]
    if ranker:
        # Labels are each person's last part of the TRAIN split: a validation split carved
        # from the training part; the test part is never seen.
        steps.append(("ranker_training", train_ranker))
    for name, run in steps:
        step = time.monotonic()
        run()
        timings[name] = time.monotonic() - step


def _served_name(prefix: str) -> str:
    """The full system's variant, named by what actually scores it."""
    from recommendations.models import RankerModel

    active = RankerModel.objects.filter(is_active=True).values_list("algorithm", "version").first()
    return (
        f"{prefix} (re-ranker: {active[0]} v{active[1]})" if active else f"{prefix} (no ranker could be trained: blend)"
    )


def _models() -> dict:
    """The versions that answered: behaviour model and re-rankers with their validation figures."""
    from recommendations.models import BehaviourModel, RankerModel

    behaviour = BehaviourModel.objects.filter(is_active=True).values("version", "algorithm", "n_items").first()
    rankers = list(
        RankerModel.objects.order_by("version").values(
            "version", "algorithm", "is_active", "validation_metrics", "notes", "trained_from", "trained_until"
        )
    )
    return {"behaviour_model": behaviour, "rankers": rankers}


def _run_variant(
    name: str,
    ask: Callable[[str], list[str]],
    split: Split,
    *,
    k: int,
    n_items: int,
    timings: dict[str, float],
    progress: Callable[[Iterable, str], Iterable],
) -> MethodResult:
    """Ask the service once per test key (a person, a query), timing each answer, and score."""
    step = time.monotonic()
    rankings, latencies = {}, []
    for key in progress(sorted(split.test), name):
        asked = time.perf_counter()
        rankings[key] = ask(key)
        latencies.append((time.perf_counter() - asked) * 1000)
    timings[name] = time.monotonic() - step
    return score_rankings(name, rankings, split, k=k, n_items=n_items, latency_ms=latencies)


def _served_variants(
    variants: list[tuple[str, tuple[str, ...], str]],
    split: Split,
    *,
    k: int,
    n_items: int,
    timings: dict[str, float],
    progress: Callable[[Iterable, str], Iterable],
    filters=None,
    exclude_seen: bool = True,
) -> list[MethodResult]:
    """(name, sources, scoring) variants of recommend_for_user, each asked for every test person
    as of their split point (as the ranker was trained: what the service would have answered
    then, with the popularity and trends of that moment)."""
    from catalog.models import Item
    from recommendations.services import recommend_for_user
    from users.models import User

    people = dict(User.objects.filter(external_id__in=list(split.test)).values_list("external_id", "id"))
    external_ids = dict(Item.objects.values_list("id", "external_id"))
    methods = []
    for name, sources, scoring in variants:

        def ask(user_id: str, sources=sources, scoring=scoring) -> list[str]:
            answer = recommend_for_user(
                user=User(id=people[user_id]),
                k=k,
                filters=filters,
                sources=sources,
                scoring=scoring,
                exclude_seen=exclude_seen,
                as_of=split.cutoffs[user_id],
                log=False,
            )
            return [external_ids[result.item.id] for result in answer.results]

        methods.append(_run_variant(name, ask, split, k=k, n_items=n_items, timings=timings, progress=progress))
    return methods


@dataclass
class Report:
    protocol: str
    k: int
    fingerprint: str
    n_users: int
    n_items: int
    n_interactions: int
    methods: list[dict]
    seconds: dict[str, float]
    models: dict = field(default_factory=dict)
    # NDCG per group of people by how much they did in the train part, per method.
    buckets: list[dict] = field(default_factory=list)
    # Per method, every answer's latency in ms (for the latency chart).
    latencies: dict[str, list[float]] = field(default_factory=dict)


ACTIVITY_BUCKETS = ((1, 20), (21, 50), (51, 100), (101, 250), (251, None))


def activity_buckets(methods: list[MethodResult], activity: dict[str, int]) -> list[dict]:
    """Mean NDCG of each method among people with 1-20, 21-50, ... train interactions."""
    rows = []
    for low, high in ACTIVITY_BUCKETS:
        keys = [key for key, count in activity.items() if count >= low and (high is None or count <= high)]
        label = f"{low}-{high}" if high else f"{low}+"
        row = {"bucket": label, "people": len(keys)}
        for method in methods:
            values = [method.per_key_ndcg[key] for key in keys if key in method.per_key_ndcg]
            row[method.name] = round(float(np.mean(values)), 4) if values else None
        rows.append(row)
    return rows


def evaluate_p1(
    *,
    source: BundleSource,
    database: str,
    k: int = 20,
    test_fraction: float = 0.2,
    test_last: int | None = None,
    include_seen: bool = False,
    with_blend: bool = False,
    progress: Callable[[Iterable, str], Iterable] = lambda rows, description: rows,
) -> Report:
    from django.conf import settings

    from recommendations.candidates import SOURCES

    timings: dict[str, float] = {}
    started = time.monotonic()
    items: list[ItemRow] = [row for row in source.items() if not isinstance(row, Rejection)]
    split = split_per_user(source.events(), test_fraction=test_fraction, test_last=test_last)
    timings["split"] = time.monotonic() - started
    with isolated_database(database):
        _build(_in_memory_source(source, items, split.train), timings, ranker=True, progress=progress)
        models = _models()
        everything = SOURCES
        variants = [(_served_name("full system"), everything, "auto")]
        if with_blend:
            # The same candidates ordered by the fallback blend: what the ranker adds (about four
            # minutes more on MovieLens small, hence asked for).
            variants.append(("full system with the blend (no ranker)", everything, "blend"))
        variants += [
            ("behaviour source only", ("behaviour",), "source"),
            ("semantic source only (text)", ("semantic",), "source"),
            ("popular source only", ("popular",), "source"),
        ]
        methods = _served_variants(
            variants,
            split,
            k=k,
            n_items=len(items),
            timings=timings,
            progress=progress,
            exclude_seen=not include_seen,
        )
    step = time.monotonic()
    for name, rankings in baseline_rankings(
        split,
        [row.external_id for row in items],
        k=k,
        ease_regularisation=settings.RECOMMENDER["EASE_REGULARISATION"],
    ).items():
        methods.append(score_rankings(f"baseline: {name}", rankings, split, k=k, n_items=len(items)))
    timings["baselines"] = time.monotonic() - step
    timings["total"] = time.monotonic() - started
    activity: dict[str, int] = defaultdict(int)
    for row in split.train:
        if row.item_id and row.kind in INTERACTION_KINDS and row.user_id in split.test:
            activity[row.user_id] += 1
    return Report(
        protocol="p1",
        k=k,
        fingerprint=split.fingerprint,
        n_users=len(split.test),
        n_items=len(items),
        n_interactions=split.n_interactions,
        methods=[method.summary() for method in methods],
        seconds={name: round(value, 1) for name, value in timings.items()},
        models=models,
        buckets=activity_buckets(methods, activity),
        latencies={method.name: method.latency_ms for method in methods if method.latency_ms},
    )


def cold_items(events: Iterable[EventRow], *, share: float = 0.1, min_events: int = 5, seed: int = 0) -> set[str]:
    """P2: a seeded `share` of the items with at least `min_events` interactions (numpy
    default_rng(seed).choice over the ids sorted numerically where they are numbers)."""
    counts: dict[str, int] = defaultdict(int)
    for row in events:
        if row.item_id and row.kind in INTERACTION_KINDS:
            counts[row.item_id] += 1
    eligible = sorted(
        (item_id for item_id, count in counts.items() if count >= min_events),
        key=lambda item_id: (0, int(item_id), "") if item_id.isdigit() else (1, 0, item_id),
    )
    if not eligible:
        raise EvaluationError(f"no item has {min_events} or more interactions: no cold items to choose")
    size = max(1, round(len(eligible) * share))
    return set(np.random.default_rng(seed).choice(np.array(eligible, dtype=object), size=size, replace=False))


def evaluate_p2(
    *,
    source: BundleSource,
    database: str,
    k: int = 20,
    progress: Callable[[Iterable, str], Iterable] = lambda rows, description: rows,
) -> Report:
    """P2 (cold items): the P1 split, but 10% of the items with >= 5 events lose all their train
    events; each person with test events on those items gets them ranked among the cold items
    only. Behaviour and popularity know nothing of them: only text can tell them apart."""
    from catalog.models import Item
    from recommendations.candidates import SOURCES
    from recommendations.selectors import ItemFilters

    timings: dict[str, float] = {}
    started = time.monotonic()
    items: list[ItemRow] = [row for row in source.items() if not isinstance(row, Rejection)]
    events = [row for row in source.events() if not isinstance(row, Rejection)]
    cold = cold_items(events)
    split = split_per_user(events)
    train = [row for row in split.train if row.item_id not in cold]
    test = {user_id: wanted & cold for user_id, wanted in split.test.items() if wanted & cold}
    if not test:
        raise EvaluationError("no person has test events on the cold items")
    cold_split = Split(
        train=train,
        test=test,
        n_interactions=split.n_interactions,
        fingerprint=split.fingerprint,
        cutoffs=split.cutoffs,
    )
    timings["split"] = time.monotonic() - started
    with isolated_database(database):
        _build(_in_memory_source(source, items, train), timings, ranker=True, progress=progress)
        models = _models()
        cold_ids = frozenset(Item.objects.filter(external_id__in=cold).values_list("id", flat=True))
        everything = SOURCES
        variants = [
            (_served_name("full system, cold items only"), everything, "auto"),
            ("semantic source only (text), cold items only", ("semantic",), "source"),
            ("behaviour source only, cold items only", ("behaviour",), "source"),
            ("popular source only, cold items only", ("popular",), "source"),
        ]
        methods = _served_variants(
            variants,
            cold_split,
            k=k,
            n_items=len(cold),
            timings=timings,
            progress=progress,
            filters=ItemFilters(only_ids=cold_ids),
        )
    ordered_cold = sorted(cold)
    rng = np.random.default_rng(0)
    random_rankings = {user_id: list(rng.permutation(ordered_cold)[:k]) for user_id in sorted(test)}
    methods.append(score_rankings("baseline: random", random_rankings, cold_split, k=k, n_items=len(cold)))
    timings["total"] = time.monotonic() - started
    return Report(
        protocol="p2",
        k=k,
        fingerprint=split.fingerprint,
        n_users=len(test),
        n_items=len(cold),
        n_interactions=split.n_interactions,
        methods=[method.summary() for method in methods],
        seconds={name: round(value, 1) for name, value in timings.items()},
        models=models,
        latencies={method.name: method.latency_ms for method in methods if method.latency_ms},
    )


def text_queries(events: Iterable[EventRow | Rejection], *, min_items: int = 2) -> dict[str, set[str]]:
    """P3 queries: every distinct lower-cased tag text given to at least `min_items` items."""
    items_by_text: dict[str, set[str]] = defaultdict(set)
    for row in events:
        if isinstance(row, Rejection) or row.kind != ActivityKind.TAG or not row.text or not row.item_id:
            continue
        items_by_text[row.text.strip().lower()].add(row.item_id)
    return {text: items for text, items in sorted(items_by_text.items()) if len(items) >= min_items}


def evaluate_p3(
    *,
    source: BundleSource,
    database: str,
    k: int = 20,
    progress: Callable[[Iterable, str], Iterable] = lambda rows, description: rows,
) -> Report:
    """P3: each tag is a free-text query; its items are the relevant set; all items are ranked.

    Item text must not contain the tags (MovieLens items carry title and genres only). The
    interactions (not the tags) are imported so the popularity term has something to count.
    """
    from django.conf import settings

    from catalog.models import Item
    from recommendations.services import recommend_for_text

    timings: dict[str, float] = {}
    started = time.monotonic()
    items: list[ItemRow] = [row for row in source.items() if not isinstance(row, Rejection)]
    events = [row for row in source.events() if not isinstance(row, Rejection)]
    queries = text_queries(events)
    if not queries:
        raise EvaluationError("the bundle has no tag events given to two or more items: nothing to query")
    interactions = [row for row in events if row.item_id and row.kind in INTERACTION_KINDS]
    digest = hashlib.sha256("\n".join(f"{text}:{sorted(ids)}" for text, ids in queries.items()).encode())
    split = Split(train=[], test=queries, n_interactions=len(interactions), fingerprint=digest.hexdigest()[:16])
    methods = []
    with isolated_database(database):
        _build(_in_memory_source(source, items, interactions), timings)
        external_ids = dict(Item.objects.values_list("id", "external_id"))
        original = settings.RECOMMENDER
        variants = [
            (f"text + {original['TEXT_POPULARITY']} x log popularity (served)", original["TEXT_POPULARITY"]),
            ("text only (served, no popularity term)", 0.0),
        ]
        for name, popularity_weight in variants:

            def ask(text: str) -> list[str]:
                answer = recommend_for_text(text=text, k=k, log=False)
                return [external_ids[result.item.id] for result in answer.results]

            # An ablation through the service's own setting, restored afterwards.
            settings.RECOMMENDER = {**original, "TEXT_POPULARITY": popularity_weight}
            try:
                methods.append(
                    _run_variant(name, ask, split, k=k, n_items=len(items), timings=timings, progress=progress)
                )
            finally:
                settings.RECOMMENDER = original
    users_per_item: dict[str, set[str]] = defaultdict(set)
    for row in interactions:
        users_per_item[row.item_id].add(row.user_id)
    popular = sorted(
        (row.external_id for row in items), key=lambda item_id: (-len(users_per_item.get(item_id, ())), item_id)
    )
    methods.append(
        score_rankings("baseline: popularity", dict.fromkeys(queries, popular[:k]), split, k=k, n_items=len(items))
    )
    timings["total"] = time.monotonic() - started
    return Report(
        protocol="p3",
        k=k,
        fingerprint=split.fingerprint,
        n_users=len(queries),
        n_items=len(items),
        n_interactions=len(interactions),
        methods=[method.summary() for method in methods],
        seconds={name: round(value, 1) for name, value in timings.items()},
        latencies={method.name: method.latency_ms for method in methods if method.latency_ms},
    )
