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
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from bundles.reading import BundleSource
from catalog.item_fields import ItemRow
from core.records import Rejection
from recommendations.evaluation.baselines import baseline_rankings
from recommendations.evaluation.databases import isolated_database
from recommendations.evaluation.metrics import MethodResult, score_rankings
from recommendations.evaluation.split import EvaluationError, Split, split_per_user
from users.events import EventRow
from users.models import INTERACTION_KINDS, ActivityKind

logger = logging.getLogger(__name__)


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
    from bundles.importing import bundle_import
    from recommendations.ranking.active import RankerError
    from recommendations.ranking.training import ranker_train
    from recommendations.retrieval.behaviour_build import behaviour_model_rebuild
    from recommendations.vectors.embedding import embeddings_process_pending

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
    from recommendations.serving.service import recommend_for_user
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

    from recommendations.retrieval.candidates import SOURCES

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
    from recommendations.retrieval.candidates import SOURCES
    from recommendations.retrieval.filters import ItemFilters

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
    from recommendations.serving.service import recommend_for_text

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

            def ask(text: str, popularity_weight=popularity_weight) -> list[str]:
                answer = recommend_for_text(text=text, k=k, log=False, popularity_weight=popularity_weight)
                return [external_ids[result.item.id] for result in answer.results]

            methods.append(_run_variant(name, ask, split, k=k, n_items=len(items), timings=timings, progress=progress))
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
