"""Offline evaluation of the served system (protocols P1 to P4 of ARCHITECTURE.md).

One runner (protocol_run) and a description per protocol of what differs (P1 to P4 below): which
events are imported and which are held out, which items may be ranked, who or what is asked,
which served variants answer and which baselines they are held against.

The runner: the bundle is split; only what the protocol imports goes into a database of its
own (never the live one); vectors, interests, the behaviour model and (P1, P2) a re-ranker are
built by the product's own services; then the SAME services the API calls answer for every test
key (a person, a query), and the answers are scored against the held-out part. Per-source
ablations go through those services too (their `sources`, `scoring` and `popularity_weight`
arguments). The baselines are computed in numpy from the same split, only to prove the protocol
matches the reference figures; they are not the product.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from bundles.reading import BundleSource
from catalog.item_fields import ItemRow
from core.conf import recommender_settings, recommender_settings_reset
from core.records import Rejection
from recommendations.evaluation.baselines import baseline_rankings
from recommendations.evaluation.databases import isolated_database
from recommendations.evaluation.metrics import MethodResult, reciprocal_rank, score_rankings
from recommendations.evaluation.split import EvaluationError, Split, split_per_user
from recommendations.ml.text_adapter import AdapterSettings
from recommendations.retrieval.history import forked_shares, interactions_snapshot, one_blas_thread
from users.events import EventRow
from users.models import ActivityKind

logger = logging.getLogger(__name__)

Progress = Callable[[Iterable, str], Iterable]
# A test key (a person's or a query's id in the bundle) -> the item ids answered, best first.
Ask = Callable[[str], list[str]]
# Test key -> the item ids a method ranked for it.
Rankings = dict[str, list[str]]


def _no_progress(rows: Iterable, description: str) -> Iterable:
    return rows


@dataclass(frozen=True)
class Options:
    """What the person running an evaluation may choose (P2 and P3 read only k)."""

    k: int = 20
    test_fraction: float = 0.2
    test_last: int | None = None
    include_seen: bool = False
    with_blend: bool = False
    # The bilingual protocol's questions (bilingual_queries.jsonl beside the bundle's items).
    queries_file: str | None = None
    # Personal protocols: processes that build the re-ranker's training data and that ask the
    # people of each variant (forked, each a contiguous share of the people; 1: this one).
    processes: int = 1


@dataclass(frozen=True)
class Setup:
    """A protocol's data, prepared from the bundle before any database is touched."""

    items: list[ItemRow]  # the catalog, all imported
    imported: list[EventRow]  # the events the served system may learn from
    split: Split  # the test keys, what is relevant to each, the report's counts and fingerprint
    # External ids of the only items that may be ranked (P2's cold items); None: all of them.
    only_items: frozenset[str] | None = None
    # Keys asked but not scored by the ranking metrics (questions nothing answers: no relevant set).
    also_asked: frozenset[str] = frozenset()
    # Key -> its labels for the protocol's breakdown (the bilingual protocol: pair, kind, split).
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        """The items that may be ranked: coverage's denominator and the report's item count."""
        return len(self.only_items) if self.only_items is not None else len(self.items)


@dataclass(frozen=True)
class Variant:
    """One served answer to score: its name in the report and how it is asked."""

    name: str
    ask: Ask
    # Free-text variants: key -> the answer's match ("close" or "none"), filled as it is asked.
    matches: dict[str, str] | None = None
    # Run once before the variant is asked (P4: the settings it is served with, the vectors
    # rebuilt by the product's own batch under them). protocol_run restores the settings after.
    prepare: Callable[[], None] | None = None


@dataclass(frozen=True)
class Protocol:
    """What differs between P1, P2 and P3; protocol_run does the rest the same way for each."""

    name: str
    # The split (outside any database; timed as "split" when split_step is true).
    prepare: Callable[[BundleSource, Options], Setup]
    # The served variants, made inside the evaluation database once it is built.
    variants: Callable[[Setup, Options], list[Variant]]
    # Baseline name -> rankings, from the split alone (numpy, after the database is left).
    baselines: Callable[[Setup, Options], dict[str, Rankings]]
    # P1 and P2 ask for people: a re-ranker is trained from the train part, and the model
    # versions that answered are reported. P3's free-text answers use neither.
    personal: bool
    split_step: bool = True
    # The baselines' seconds are reported under this name (P2's and P3's take no time to speak of).
    baselines_step: str | None = None
    # NDCG per group of people by how active they were in the train part (P1).
    activity_buckets: bool = False
    # Rows of figures per group of keys, from each variant's rankings and K (the bilingual protocol,
    # P3's validation queries).
    breakdown: Callable[[Setup, Variant, Rankings, int], list[dict]] | None = None


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
    # Protocol-specific figures per group of keys (the bilingual protocol: by split, pair and kind).
    breakdown: list[dict] = field(default_factory=list)


def protocol_run(
    protocol: Protocol,
    *,
    source: BundleSource,
    database: str,
    options: Options,
    progress: Progress = _no_progress,
) -> Report:
    """Split, build the served system from the train part in `database`, ask it, score."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    setup = protocol.prepare(source, options)
    if protocol.split_step:
        timings["split"] = time.monotonic() - started
    models: dict = {}
    with isolated_database(database):
        _build(
            _in_memory_source(source, setup.items, setup.imported),
            timings,
            ranker=protocol.personal,
            processes=options.processes,
            progress=progress,
        )
        if protocol.personal:
            models = _models()
        methods = []
        breakdown: list[dict] = []
        served_settings = settings.RECOMMENDER
        # Personal protocols ask each person as of their split point: popularity and evidence of
        # those moments are read from one copy of the built interactions in memory.
        snapshot = interactions_snapshot() if protocol.personal else contextlib.nullcontext()
        try:
            with snapshot:
                for variant in protocol.variants(setup, options):
                    method, rankings = _run_variant(
                        variant,
                        setup,
                        k=options.k,
                        timings=timings,
                        progress=progress,
                        personal=protocol.personal,
                        processes=options.processes,
                    )
                    methods.append(method)
                    if protocol.breakdown is not None:
                        breakdown += protocol.breakdown(setup, variant, rankings, options.k)
            # P4's learned text sides train text models while their rows are prepared.
            if text_models := _text_models():
                models = {**models, "text_models": text_models}
        finally:
            settings.RECOMMENDER = served_settings
            recommender_settings_reset()
    step = time.monotonic()
    for name, rankings in protocol.baselines(setup, options).items():
        methods.append(score_rankings(name, rankings, setup.split, k=options.k, n_items=setup.n_items))
    if protocol.baselines_step:
        timings[protocol.baselines_step] = time.monotonic() - step
    timings["total"] = time.monotonic() - started
    return Report(
        protocol=protocol.name,
        k=options.k,
        fingerprint=setup.split.fingerprint,
        n_users=len(setup.split.test),
        n_items=setup.n_items,
        n_interactions=setup.split.n_interactions,
        methods=[method.summary() for method in methods],
        seconds={name: round(value, 1) for name, value in timings.items()},
        models=models,
        buckets=activity_buckets(methods, _train_activity(setup.split)) if protocol.activity_buckets else [],
        latencies={method.name: method.latency_ms for method in methods if method.latency_ms},
        breakdown=breakdown,
    )


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
    processes: int = 1,
    progress: Progress = _no_progress,
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
            ranker_train(progress=progress, processes=processes)
        except RankerError as error:
            # Too little to learn from (a tiny bundle): the service answers with its blend,
            # as it would in production, and the report names what served.
            logger.warning("no re-ranker for this evaluation: %s", error)

    steps: list[tuple[str, Callable[[], object]]] = [
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


def _text_models() -> list[dict]:
    from recommendations.models import TextModel

    return [
        dict(row)
        for row in TextModel.objects.order_by("version").values(
            "version",
            "algorithm",
            "base_model",
            "is_active",
            "training_pairs",
            "validation_metrics",
            "match_floor",
            "notes",
            "trained_from",
            "trained_until",
        )
    ]


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
    variant: Variant,
    setup: Setup,
    *,
    k: int,
    timings: dict[str, float],
    progress: Progress,
    personal: bool = False,
    processes: int = 1,
) -> tuple[MethodResult, Rankings]:
    """Ask the service once per test key (a person, a query), timing each answer, and score.
    Personal variants (they read stored vectors only) are asked with BLAS on one thread, and over
    `processes` forked processes when there are enough people."""
    step = time.monotonic()
    if variant.prepare is not None:
        variant.prepare()
        timings[f"{variant.name}: preparing"] = time.monotonic() - step
        step = time.monotonic()
    keys = sorted(setup.split.test) + sorted(setup.also_asked)
    if personal and processes > 1 and len(keys) >= 2 * processes:
        rankings, latencies = _asked_in_processes(variant, keys, processes=processes)
    else:
        with one_blas_thread() if personal else contextlib.nullcontext():
            rankings, latencies = _asked(variant, progress(keys, variant.name))
    timings[variant.name] = time.monotonic() - step
    logger.info(
        "evaluation variant asked variant=%r keys=%d processes=%d ms=%d",
        variant.name,
        len(keys),
        processes if personal else 1,
        timings[variant.name] * 1000,
    )
    scored = score_rankings(variant.name, rankings, setup.split, k=k, n_items=setup.n_items, latency_ms=latencies)
    return scored, rankings


def _asked(variant: Variant, keys: Iterable[str]) -> tuple[Rankings, list[float]]:
    rankings, latencies = {}, []
    for key in keys:
        asked = time.perf_counter()
        rankings[key] = variant.ask(key)
        latencies.append((time.perf_counter() - asked) * 1000)
    return rankings, latencies


def _active_ranker_parse() -> None:
    """Load the active ranker here, before the fork, so the children inherit it parsed. A
    LightGBM model parsed in a child forked after this process trained one never returns:
    parsing runs on OpenMP, whose thread pool does not survive a fork (the children waited on
    futexes at 0% CPU; measured with lightgbm 4.7). Scoring with an inherited one (one thread)
    is safe."""
    from recommendations.ranking.active import active_ranker

    _version, ranker = active_ranker()
    if ranker is not None:
        ranker.score(np.zeros((1, len(ranker.features))))


def _asked_in_processes(variant: Variant, keys: list[str], *, processes: int) -> tuple[Rankings, list[float]]:
    """_asked over `processes` forked children, each a contiguous share of the keys
    (history.forked_shares): the same answers as one process (each is computed as of its own
    moment from the same database and snapshot), in the same order. Personal variants only: they
    read stored vectors, so the children start no encoder."""
    _active_ranker_parse()

    def asked_share(share: list[str], _start: int) -> tuple[Rankings, list[float]]:
        with one_blas_thread():
            return _asked(variant, share)

    parts = forked_shares(asked_share, keys, processes=processes, what=f"evaluation variant {variant.name!r}")
    if parts is None:
        with one_blas_thread():
            return _asked(variant, keys)
    rankings: Rankings = {}
    latencies: list[float] = []
    for part_rankings, part_latencies in parts:
        rankings.update(part_rankings)
        latencies += part_latencies
    return rankings, latencies


# A variant of recommend_for_user: its name in the report, the sources it gathers, its scoring.
Specification = tuple[str, tuple[str, ...], str]


def _person_variants(
    specifications: list[Specification],
    split: Split,
    *,
    k: int,
    filters=None,
    exclude_seen: bool = True,
) -> list[Variant]:
    """(name, sources, scoring) variants of recommend_for_user, each asked for every test person
    as of their split point (as the ranker was trained: what the service would have answered
    then, with the popularity and trends of that moment)."""
    from catalog.models import Item
    from recommendations.serving.service import recommend_for_user
    from users.models import User

    people = dict(User.objects.filter(external_id__in=list(split.test)).values_list("external_id", "id"))
    external_ids = dict(Item.objects.values_list("id", "external_id"))

    def variant(name: str, sources: tuple[str, ...], scoring: str) -> Variant:
        def ask(user_id: str) -> list[str]:
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

        return Variant(name, ask)

    return [variant(name, sources, scoring) for name, sources, scoring in specifications]


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


def _train_activity(split: Split) -> dict[str, int]:
    """Each test person's interactions in the train part."""
    activity: dict[str, int] = defaultdict(int)
    for row in split.train:
        if row.is_interaction and row.user_id in split.test:
            activity[row.user_id] += 1
    return activity


def _catalog(source: BundleSource) -> list[ItemRow]:
    return [row for row in source.items() if not isinstance(row, Rejection)]


# --- P1: each person's last interactions held out, all items ranked -----------------------------


def _p1_prepare(source: BundleSource, options: Options) -> Setup:
    items = _catalog(source)
    split = split_per_user(source.events(), test_fraction=options.test_fraction, test_last=options.test_last)
    return Setup(items=items, imported=split.train, split=split)


def _p1_variants(setup: Setup, options: Options) -> list[Variant]:
    from recommendations.retrieval.candidates import SOURCES

    everything = SOURCES
    specifications: list[Specification] = [(_served_name("full system"), everything, "auto")]
    if options.with_blend:
        # The same candidates ordered by the fallback blend: what the ranker adds (about four
        # minutes more on MovieLens small, hence asked for).
        specifications.append(("full system with the blend (no ranker)", everything, "blend"))
    specifications += [
        ("behaviour source only", ("behaviour",), "source"),
        ("semantic source only (text)", ("semantic",), "source"),
        ("popular source only", ("popular",), "source"),
    ]
    return _person_variants(specifications, setup.split, k=options.k, exclude_seen=not options.include_seen)


def _p1_baselines(setup: Setup, options: Options) -> dict[str, Rankings]:

    rankings = baseline_rankings(
        setup.split,
        [row.external_id for row in setup.items],
        k=options.k,
        ease_regularisation=recommender_settings().ease_regularisation,
    )
    return {f"baseline: {name}": ranked for name, ranked in rankings.items()}


P1 = Protocol(
    name="p1",
    prepare=_p1_prepare,
    variants=_p1_variants,
    baselines=_p1_baselines,
    personal=True,
    baselines_step="baselines",
    activity_buckets=True,
)


# --- P2: cold items, known only by their text ----------------------------------------------------


def cold_items(events: Iterable[EventRow], *, share: float = 0.1, min_events: int = 5, seed: int = 0) -> set[str]:
    """P2: a seeded `share` of the items with at least `min_events` interactions (numpy
    default_rng(seed).choice over the ids sorted numerically where they are numbers)."""
    counts: dict[str, int] = defaultdict(int)
    for row in events:
        if (item_id := row.interaction_item()) is not None:
            counts[item_id] += 1
    eligible = sorted(
        (item_id for item_id, count in counts.items() if count >= min_events),
        key=lambda item_id: (0, int(item_id), "") if item_id.isdigit() else (1, 0, item_id),
    )
    if not eligible:
        raise EvaluationError(f"no item has {min_events} or more interactions: no cold items to choose")
    size = max(1, round(len(eligible) * share))
    return set(np.random.default_rng(seed).choice(np.array(eligible, dtype=object), size=size, replace=False))


def _p2_prepare(source: BundleSource, options: Options) -> Setup:
    """The P1 split, but 10% of the items with >= 5 events lose all their train events; each
    person with test events on those items gets them ranked among the cold items only.
    Behaviour and popularity know nothing of them: only text can tell them apart."""
    items = _catalog(source)
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
    return Setup(items=items, imported=train, split=cold_split, only_items=frozenset(cold))


def _p2_variants(setup: Setup, options: Options) -> list[Variant]:
    from catalog.models import Item
    from recommendations.retrieval.candidates import SOURCES
    from recommendations.retrieval.filters import ItemFilters

    cold_ids = frozenset(Item.objects.filter(external_id__in=setup.only_items).values_list("id", flat=True))
    everything = SOURCES
    specifications: list[Specification] = [
        (_served_name("full system, cold items only"), everything, "auto"),
        ("semantic source only (text), cold items only", ("semantic",), "source"),
        ("behaviour source only, cold items only", ("behaviour",), "source"),
        ("popular source only, cold items only", ("popular",), "source"),
    ]
    return _person_variants(specifications, setup.split, k=options.k, filters=ItemFilters(only_ids=cold_ids))


def _p2_baselines(setup: Setup, options: Options) -> dict[str, Rankings]:
    ordered_cold = sorted(setup.only_items or ())
    rng = np.random.default_rng(0)
    return {
        "baseline: random": {
            user_id: list(rng.permutation(ordered_cold)[: options.k]) for user_id in sorted(setup.split.test)
        }
    }


P2 = Protocol(name="p2", prepare=_p2_prepare, variants=_p2_variants, baselines=_p2_baselines, personal=True)


# --- P3: tags as free-text queries ---------------------------------------------------------------


def text_queries(events: Iterable[EventRow | Rejection], *, min_items: int = 2) -> dict[str, set[str]]:
    """P3 queries: every distinct lower-cased tag text given to at least `min_items` items."""
    items_by_text: dict[str, set[str]] = defaultdict(set)
    for row in events:
        if isinstance(row, Rejection) or row.kind != ActivityKind.TAG or not row.text or not row.item_id:
            continue
        items_by_text[row.text.strip().lower()].add(row.item_id)
    return {text: items for text, items in sorted(items_by_text.items()) if len(items) >= min_items}


def _p3_prepare(source: BundleSource, options: Options) -> Setup:
    """Each tag is a free-text query; its items are the relevant set; all items are ranked.

    Item text must not contain the tags (MovieLens items carry title and genres only). The
    interactions (not the tags) are imported so the popularity term has something to count.
    """
    items = _catalog(source)
    events = [row for row in source.events() if not isinstance(row, Rejection)]
    queries = text_queries(events)
    if not queries:
        raise EvaluationError("the bundle has no tag events given to two or more items: nothing to query")
    interactions = [row for row in events if row.is_interaction]
    digest = hashlib.sha256("\n".join(f"{text}:{sorted(ids)}" for text, ids in queries.items()).encode())
    split = Split(train=[], test=queries, n_interactions=len(interactions), fingerprint=digest.hexdigest()[:16])
    return Setup(items=items, imported=interactions, split=split)


# The popularity weight (TEXT_POPULARITY) P3's MovieLens catalog is served with, per encoder:
# chosen on P3's validation queries (P4's 271 train queries, never a P4 test query; EVALUATION.md
# "P3"), as P4_COMMUNITY_WEIGHT was on P4's. TEXT_POPULARITY is a per-catalog setting: the
# cosine's scale differs per encoder and the popularity's per catalog, so the product's default
# stays what the bilingual demo set and P4 were measured with. A model without a chosen weight
# gets no such row.
P3_TEXT_POPULARITY = {"all-MiniLM-L6-v2": 0.08}


def p3_validation_queries(queries: Iterable[str]) -> set[str]:
    """P3's validation queries: P4's train half (p4_query_split), so a choice made on them never
    reads a P4 test query, and P3's figure on its other queries stays unseen by the choice."""
    return set(p4_query_split(queries)[1])


def _p3_variants(setup: Setup, options: Options) -> list[Variant]:

    from catalog.models import Item
    from recommendations.serving.service import recommend_for_text

    external_ids = dict(Item.objects.values_list("id", "external_id"))

    def variant(name: str, popularity_weight: float | None) -> Variant:
        def ask(text: str) -> list[str]:
            answer = recommend_for_text(text=text, k=options.k, log=False, popularity_weight=popularity_weight)
            return [external_ids[result.item.id] for result in answer.results]

        return Variant(name, ask)

    config = recommender_settings()
    # None: the weight the service reads from its settings, as the API asks.
    variants = [variant(f"text + {config.text_popularity} x log popularity (served default)", None)]
    if (chosen := P3_TEXT_POPULARITY.get(config.serving_model)) is not None:
        variants.append(variant(f"text + {chosen} x log popularity (chosen on the validation queries)", chosen))
    return [*variants, variant("text only (served, no popularity term)", 0.0)]


def _p3_breakdown(setup: Setup, variant: Variant, rankings: Rankings, k: int) -> list[dict]:
    """Each row's figures on P3's validation queries alone (what a choice may be made on)."""
    validation = p3_validation_queries(setup.split.test)
    if not validation:
        return []
    split = Split(
        train=[],
        test={key: relevant for key, relevant in setup.split.test.items() if key in validation},
        n_interactions=setup.split.n_interactions,
        fingerprint=setup.split.fingerprint,
    )
    scored = score_rankings(variant.name, rankings, split, k=k, n_items=setup.n_items)
    return [
        {
            "method": variant.name,
            "split": "validation",
            "group": "P4's train queries",
            "queries": len(split.test),
            "recall": round(scored.recall, 4),
            "ndcg": round(scored.ndcg, 4),
        }
    ]


def _p3_baselines(setup: Setup, options: Options) -> dict[str, Rankings]:
    users_per_item: dict[str, set[str]] = defaultdict(set)
    for row in setup.imported:
        # Interactions only (P4 imports the allowed tags beside them); each names an item.
        if row.is_interaction and row.item_id is not None:
            users_per_item[row.item_id].add(row.user_id)
    popular = sorted(
        (row.external_id for row in setup.items), key=lambda item_id: (-len(users_per_item.get(item_id, ())), item_id)
    )
    return {"baseline: popularity": dict.fromkeys(setup.split.test, popular[: options.k])}


P3 = Protocol(
    name="p3",
    prepare=_p3_prepare,
    variants=_p3_variants,
    baselines=_p3_baselines,
    personal=False,
    split_step=False,
    breakdown=_p3_breakdown,
)

# --- P4: tags as queries, learned without leakage ------------------------------------------------


def p4_query_split(queries: Iterable[str]) -> tuple[list[str], list[str]]:
    """ARCHITECTURE.md P4: numpy default_rng(0).permutation(n) over the sorted query strings; the
    first half (271 of MovieLens small's 542) are test queries, the other half train."""
    ordered = sorted(queries)
    order = np.random.default_rng(0).permutation(len(ordered))
    half = len(ordered) // 2
    return [ordered[index] for index in order[:half]], [ordered[index] for index in order[half:]]


def p4_validation_split(train_queries: Iterable[str]) -> tuple[list[str], list[str]]:
    """The validation queries carved from P4's TRAIN queries (default_rng(1).permutation over
    them, sorted; the first half validate), for tuning the community weight and its rules:
    the test queries are never read. Returns (validation, the train queries left)."""
    ordered = sorted(train_queries)
    order = np.random.default_rng(1).permutation(len(ordered))
    half = len(ordered) // 2
    return [ordered[index] for index in order[:half]], [ordered[index] for index in order[half:]]


@dataclass(frozen=True)
class TextSideData:
    """What P4 lets the system learn its text side from: every event imported (ratings and the
    allowed tags) and the train queries with their items. Never a test query."""

    events: list[EventRow]
    train_queries: dict[str, set[str]]


# The community weight P4's rows are served with on MovieLens: chosen on the validation split
# carved from the train queries (p4-validation, EVALUATION.md "P4": the best of P4_WEIGHT_GRID),
# never on the test queries. The product's COMMUNITY_WEIGHT is a per-catalog setting.
P4_COMMUNITY_WEIGHT = 4.0


@dataclass(frozen=True)
class TextModelSide:
    """A learned text side of P4: the product's text model (vectors.text_model.text_model_train)
    trained inside the evaluation database from what P4 imports (every rating and every allowed
    tag event: never a held-out query), over the items' served vectors with this community
    weight, and activated by the product's own rule (it must beat the frozen encoder on its own
    validation, the latest-written texts). Its row is then asked through recommend_for_text."""

    community_weight: float
    hyper: AdapterSettings = field(default_factory=AdapterSettings)
    # The refit's epochs (None: the text model's own validation chooses).
    epochs: int | None = None
    # TEXT_POPULARITY the row is served with (None: the setting's).
    text_popularity: float | None = None

    def describe(self) -> str:
        epochs = "epochs by its validation" if self.epochs is None else f"{self.epochs} epochs"
        popularity = "" if self.text_popularity is None else f", popularity {self.text_popularity:g}"
        return f"community weight {self.community_weight:g}, {self.hyper.describe()}, {epochs}{popularity}"

    def __call__(self, data: TextSideData) -> None:
        from recommendations.vectors.text_model import TextModelError, text_model_deactivate, text_model_train

        # Each side learns over the frozen encoder's served vectors, never from an earlier row's
        # model: the version it activated is retired before the vectors are rebuilt.
        text_model_deactivate(base_model=recommender_settings().serving_model)
        knobs = {"COMMUNITY_WEIGHT": self.community_weight}
        if self.text_popularity is not None:
            knobs["TEXT_POPULARITY"] = self.text_popularity
        community_configure(**knobs)()
        try:
            version = text_model_train(hyper=self.hyper, epochs=self.epochs)
        except TextModelError as error:
            # Too little to learn from: the frozen encoder answers, as it would in production.
            logger.warning("no text model for this row: %s", error)
            return
        logger.info(
            "P4 text side (%s) v%d active=%s, learned from %d train queries' tags and the other allowed tags",
            self.describe(),
            version.version,
            version.is_active,
            len(data.train_queries),
        )


# The hook for learned text models (issue #14 item 2): (name of the row, builder). A builder is
# called inside the evaluation database once the served system is built from the allowed
# events; it trains what it trains from TextSideData (e.g. TextModelSide: the product's text
# model) and activates it through the product's services; its row is then asked through
# recommend_for_text like the others, with the community text and popularity as served. Rows
# run in this order, after the community row; a builder leaves its model active for the rows
# after it.
TextSideBuilder = Callable[[TextSideData], None]
# The text model's settings P4's rows train with: the best row of p4-validation-text-model
# (EVALUATION.md "P4": every item of the catalog as a negative, temperature 0.02, learning rate
# 5e-5: NDCG@20 0.1488 on the validation queries against 0.1358 with the in-batch softmax at its
# best settings, temperature 0.01, and 0.1122 without a text model), never the test queries.
P4_TEXT_MODEL_SETTINGS = AdapterSettings(temperature=0.02, learning_rate=5e-5, catalog_negatives=10_000)
# The in-batch softmax's settings, chosen by the first validation grid: a row of P4 for comparison.
P4_IN_BATCH_SETTINGS = AdapterSettings(temperature=0.01, learning_rate=5e-5)
P4_TEXT_SIDES: list[tuple[str, TextSideBuilder]] = [
    (
        f"+ learned text model over the community vectors (full served system: community weight "
        f"{P4_COMMUNITY_WEIGHT:g}, text model trained against the catalog, popularity)",
        TextModelSide(community_weight=P4_COMMUNITY_WEIGHT, hyper=P4_TEXT_MODEL_SETTINGS),
    ),
    (
        "learned text model over the community vectors, in-batch negatives only (the previous setting)",
        TextModelSide(community_weight=P4_COMMUNITY_WEIGHT, hyper=P4_IN_BATCH_SETTINGS),
    ),
    # The text model over the catalog text alone (was the protocol p4-text-model, at the defaults).
    (
        "learned text model over catalog text only (community weight 0)",
        TextModelSide(community_weight=0.0, hyper=P4_TEXT_MODEL_SETTINGS),
    ),
]


def _tag_query(row: EventRow) -> str | None:
    if row.kind != ActivityKind.TAG or not row.text or not row.item_id:
        return None
    return row.text.strip().lower()


def _p4_setup(source: BundleSource, *, validation: bool) -> tuple[Setup, TextSideData]:
    """The test (or validation) queries and what may be learned: every rating and every tag event
    whose lower-cased text is not a held-out query (nor, in validation, a test query)."""
    items = _catalog(source)
    events = [row for row in source.events() if not isinstance(row, Rejection)]
    queries = text_queries(events)
    if not queries:
        raise EvaluationError("the bundle has no tag events given to two or more items: nothing to query")
    test, train = p4_query_split(queries)
    asked = test
    if validation:
        asked, train = p4_validation_split(train)
    hidden = set(test) | set(asked)
    imported = [
        row for row in events if row.is_interaction or ((query := _tag_query(row)) is not None and query not in hidden)
    ]
    digest = hashlib.sha256("\n".join(f"{text}:{sorted(queries[text])}" for text in sorted(asked)).encode())
    split = Split(
        train=[],
        test={text: queries[text] for text in asked},
        n_interactions=sum(row.is_interaction for row in events),
        fingerprint=digest.hexdigest()[:16],
    )
    return Setup(items=items, imported=imported, split=split), TextSideData(
        events=imported, train_queries={text: queries[text] for text in train}
    )


def _p4_prepare(source: BundleSource, options: Options) -> Setup:
    return _p4_setup(source, validation=False)[0]


def _p4_validation_prepare(source: BundleSource, options: Options) -> Setup:
    return _p4_setup(source, validation=True)[0]


def community_configure(**knobs: float) -> Callable[[], None]:
    """A variant's preparation: serve with these community settings (COMMUNITY_WEIGHT=...), the
    community and served vectors rebuilt by the product's own batch under them."""

    def prepare() -> None:
        from catalog.models import Item
        from recommendations.vectors.community import community_process_stale

        before = recommender_settings().as_dict()
        settings.RECOMMENDER = {**settings.RECOMMENDER, **knobs}
        recommender_settings_reset()
        # Anything but the weight changes the community vectors themselves: rebuild them all.
        if any(before[key] != value for key, value in knobs.items() if key != "COMMUNITY_WEIGHT"):
            Item.objects.update(community_stale=True)
        community_process_stale(model_name=recommender_settings().encoder_model)

    return prepare


def _text_variant(name: str, *, k: int, popularity_weight: float | None, prepare: Callable[[], None]) -> Variant:
    from catalog.models import Item
    from recommendations.serving.service import recommend_for_text

    external_ids = dict(Item.objects.values_list("id", "external_id"))

    def ask(text: str) -> list[str]:
        answer = recommend_for_text(text=text, k=k, log=False, popularity_weight=popularity_weight)
        return [external_ids[result.item.id] for result in answer.results]

    return Variant(name, ask, prepare=prepare)


def _p4_variants(setup: Setup, options: Options) -> list[Variant]:
    """The ablation rows of #14: catalog text only, + popularity, + community text (as served),
    then each learned text side of P4_TEXT_SIDES. The source's TextSideData is rebuilt from the
    setup's imported events (the builders learn from nothing else)."""
    popularity, weight = recommender_settings().text_popularity, P4_COMMUNITY_WEIGHT
    variants = [
        _text_variant(
            "catalog text only (no popularity term)",
            k=options.k,
            popularity_weight=0.0,
            prepare=community_configure(COMMUNITY_WEIGHT=0.0),
        ),
        _text_variant(
            f"catalog text + {popularity:g} x log popularity",
            k=options.k,
            popularity_weight=None,
            prepare=community_configure(COMMUNITY_WEIGHT=0.0),
        ),
        _text_variant(
            f"+ community text (weight {weight:g}, chosen on the validation split)",
            k=options.k,
            popularity_weight=None,
            prepare=community_configure(COMMUNITY_WEIGHT=weight),
        ),
    ]
    if P4_TEXT_SIDES:
        data = TextSideData(events=setup.imported, train_queries=_p4_train_queries(setup))
        for name, builder in P4_TEXT_SIDES:
            variants.append(
                _text_variant(name, k=options.k, popularity_weight=None, prepare=functools.partial(builder, data))
            )
    return variants


def _p4_train_queries(setup: Setup) -> dict[str, set[str]]:
    """The train queries and their items, from the imported tags (never a held-out query)."""
    return {text: items for text, items in text_queries(setup.imported).items() if text not in setup.split.test}


# The grid P4's validation reads (EVALUATION.md "P4"): the community weight, and how a low-rated
# text counts (pushed away, dropped, or as any other) and how fast old words fade, at weight 2.
P4_WEIGHT_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
P4_RULES_GRID: tuple[tuple[str, dict[str, float]], ...] = (
    ("low-rated words ignored (counted as any other)", {"COMMUNITY_LOW_RATING_WEIGHT": 1.0}),
    ("low-rated words dropped", {"COMMUNITY_LOW_RATING_WEIGHT": 0.0}),
    ("no fading (half-life 100,000 days)", {"COMMUNITY_HALF_LIFE_DAYS": 100_000.0}),
)


def _p4_validation_variants(setup: Setup, options: Options) -> list[Variant]:
    config = recommender_settings()
    served = {
        "COMMUNITY_LOW_RATING_WEIGHT": config.community_low_rating_weight,
        "COMMUNITY_HALF_LIFE_DAYS": config.community_half_life_days,
    }
    variants = [
        _text_variant(
            f"community weight {weight:g} (low-rated x {served['COMMUNITY_LOW_RATING_WEIGHT']:g}, "
            f"half-life {served['COMMUNITY_HALF_LIFE_DAYS']:g} d)",
            k=options.k,
            popularity_weight=None,
            prepare=community_configure(COMMUNITY_WEIGHT=weight, **served),
        )
        for weight in P4_WEIGHT_GRID
    ]
    variants += [
        _text_variant(
            f"community weight {config.community_weight:g}, {name}",
            k=options.k,
            popularity_weight=None,
            prepare=community_configure(COMMUNITY_WEIGHT=config.community_weight, **{**served, **knobs}),
        )
        for name, knobs in P4_RULES_GRID
    ]
    return variants


P4 = Protocol(
    name="p4",
    prepare=_p4_prepare,
    variants=_p4_variants,
    baselines=_p3_baselines,
    personal=False,
)
# Tuning on P4's train queries only: the validation half is hidden as P4 hides its test half.
P4_VALIDATION = Protocol(
    name="p4-validation",
    prepare=_p4_validation_prepare,
    variants=_p4_validation_variants,
    baselines=_p3_baselines,
    personal=False,
)


# The learned text model's settings, compared on P4's validation split (its held-out queries
# hidden as P4 hides the test ones), over the community weight that split chose; the first rows
# are that weight without a text model. EVALUATION.md "P4" says what each gave and which won
# (the first grid, the adapter's defaults and temperatures 0.02-0.05 with the in-batch softmax,
# is recorded there with its commit).
P4_TEXT_MODEL_GRID: tuple[TextModelSide, ...] = (
    # The in-batch softmax the first grid chose (temperature 0.01, learning rate 5e-5).
    TextModelSide(community_weight=P4_COMMUNITY_WEIGHT, hyper=AdapterSettings(temperature=0.01, learning_rate=5e-5)),
    # Every item of the catalog as a negative (MovieLens small has 9,742): each answer must beat
    # the catalog it is searched in, not only the batch's other answers.
    *(
        TextModelSide(
            community_weight=P4_COMMUNITY_WEIGHT,
            hyper=AdapterSettings(temperature=temperature, learning_rate=5e-5, catalog_negatives=10_000),
        )
        for temperature in (0.01, 0.02, 0.05)
    ),
)


def _p4_validation_text_model_variants(setup: Setup, options: Options) -> list[Variant]:
    data = TextSideData(events=setup.imported, train_queries=_p4_train_queries(setup))
    popularity = recommender_settings().text_popularity
    variants = [
        _text_variant(
            f"community weight {P4_COMMUNITY_WEIGHT:g}, frozen encoder, popularity {weight:g}",
            k=options.k,
            popularity_weight=weight,
            prepare=community_configure(COMMUNITY_WEIGHT=P4_COMMUNITY_WEIGHT),
        )
        for weight in (popularity, 0.04)
    ]
    variants += [
        _text_variant(
            f"text model: {side.describe()}",
            k=options.k,
            popularity_weight=None,
            prepare=functools.partial(side, data),
        )
        for side in P4_TEXT_MODEL_GRID
    ]
    return variants


P4_VALIDATION_TEXT_MODEL = Protocol(
    name="p4-validation-text-model",
    prepare=_p4_validation_prepare,
    variants=_p4_validation_text_model_variants,
    baselines=_p3_baselines,
    personal=False,
)


# --- bilingual: Chinese and English questions over the demo catalog, and questions nothing answers --

BILINGUAL_PAIRS = ("zh-zh", "zh-en", "en-zh", "en-en")
BILINGUAL_KINDS = ("product", "service", "none")
BILINGUAL_SPLITS = ("calibration", "test")


@dataclass(frozen=True)
class BilingualQuery:
    query: str
    pair: str
    kind: str
    relevant: frozenset[str]
    split: str


def bilingual_queries(path: str) -> list[BilingualQuery]:
    """The questions of bilingual_queries.jsonl: one JSON object a line (README "Evaluation")."""
    import json
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise EvaluationError(f"{file} is missing: the bilingual protocol asks the questions it holds")
    queries = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            query = BilingualQuery(
                query=str(row["query"]),
                pair=row["pair"],
                kind=row["kind"],
                relevant=frozenset(row["relevant"]),
                split=row["split"],
            )
        except (ValueError, KeyError, TypeError) as error:
            raise EvaluationError(f"{file.name} line {number}: not a query object ({error})") from error
        if (
            query.pair not in BILINGUAL_PAIRS
            or query.kind not in BILINGUAL_KINDS
            or query.split not in BILINGUAL_SPLITS
        ):
            raise EvaluationError(f"{file.name} line {number}: unknown pair, kind or split")
        if (query.kind == "none") != (not query.relevant):
            raise EvaluationError(f"{file.name} line {number}: only a 'none' question has no relevant items")
        queries.append(query)
    if len({query.query for query in queries}) != len(queries):
        raise EvaluationError(f"{file.name} asks a question twice")
    return queries


def _bilingual_prepare(source: BundleSource, options: Options) -> Setup:
    """Every question is asked; the answerable ones are scored against their relevant items,
    the others only for whether the answer says nothing is close. The interactions are imported
    so the popularity term (and the popular items of a "none" answer) are as served."""
    if not options.queries_file:
        raise EvaluationError("the bilingual protocol needs its questions file (bilingual_queries.jsonl)")
    items = _catalog(source)
    queries = bilingual_queries(options.queries_file)
    known = {row.external_id for row in items}
    for query in queries:
        if unknown := sorted(query.relevant - known):
            raise EvaluationError(f"{query.query!r} names items the bundle does not hold: {', '.join(unknown)}")
    events = [row for row in source.events() if not isinstance(row, Rejection)]
    interactions = [row for row in events if row.is_interaction]
    digest = hashlib.sha256(
        "\n".join(f"{query.query}:{sorted(query.relevant)}:{query.split}" for query in queries).encode()
    )
    split = Split(
        train=[],
        test={query.query: set(query.relevant) for query in queries if query.relevant},
        n_interactions=len(interactions),
        fingerprint=digest.hexdigest()[:16],
    )
    return Setup(
        items=items,
        imported=interactions,
        split=split,
        also_asked=frozenset(query.query for query in queries if not query.relevant),
        labels={query.query: {"pair": query.pair, "kind": query.kind, "split": query.split} for query in queries},
    )


def _bilingual_variants(setup: Setup, options: Options) -> list[Variant]:
    from catalog.models import Item
    from recommendations.ml.model_cards import model_card
    from recommendations.serving.service import MatchFloor, recommend_for_text

    external_ids = dict(Item.objects.values_list("id", "external_id"))

    def variant(name: str, match_floor: MatchFloor) -> Variant:
        matches: dict[str, str] = {}

        def ask(text: str) -> list[str]:
            answer = recommend_for_text(text=text, k=options.k, log=False, match_floor=match_floor)
            matches[text] = answer.match or ""
            return [external_ids[result.item.id] for result in answer.results]

        return Variant(name, ask, matches)

    model_name = recommender_settings().serving_model
    card = model_card(model_name)
    second = f" and {card.english_second_opinion}'s second opinion" if card.english_second_opinion else ""
    return [
        # "card": the floor the API answers with (and the card's second opinion on English questions).
        variant(f"served ({model_name}, match floor {card.match_floor}{second})", "card"),
        variant(f"served ({model_name}) without a match floor", None),
    ]


def _bilingual_breakdown(setup: Setup, variant: Variant, rankings: Rankings, k: int) -> list[dict]:
    """hit@1, hit@5, MRR@10 and the no-match rate per split, overall, per language pair and per
    kind (whatever K the answers were asked with). For answerable questions the no-match rate is
    the share wrongly told "nothing is close"; for the questions nothing answers, the share
    rightly told so."""
    matches = variant.matches or {}
    rows = []
    for split in (*BILINGUAL_SPLITS, "all"):
        keys = [key for key, label in setup.labels.items() if split in ("all", label["split"])]
        groups: list[tuple[str, list[str]]] = [("answerable", [key for key in keys if key in setup.split.test])]
        groups += [
            (f"pair {pair}", [key for key in keys if key in setup.split.test and setup.labels[key]["pair"] == pair])
            for pair in BILINGUAL_PAIRS
        ]
        groups += [
            (f"kind {kind}", [key for key in keys if setup.labels[key]["kind"] == kind]) for kind in BILINGUAL_KINDS
        ]
        # The questions nothing answers, by the language they are asked in.
        groups += [
            (
                f"kind none, asked in {language}",
                [
                    key
                    for key in keys
                    if setup.labels[key]["kind"] == "none" and setup.labels[key]["pair"][:2] == language
                ],
            )
            for language in ("zh", "en")
        ]
        for group, members in groups:
            if not members:
                continue
            answerable = [key for key in members if key in setup.split.test]
            row: dict = {"method": variant.name, "split": split, "group": group, "queries": len(members)}
            if answerable:
                row["hit@1"] = _mean(_hit(rankings[key], setup.split.test[key], 1) for key in answerable)
                row["hit@5"] = _mean(_hit(rankings[key], setup.split.test[key], 5) for key in answerable)
                row["mrr@10"] = _mean(reciprocal_rank(rankings[key], setup.split.test[key], 10) for key in answerable)
            row["no_match"] = _mean(float(matches.get(key) == "none") for key in members)
            rows.append(row)
    return rows


def _hit(ranked: list[str], relevant: set[str], k: int) -> float:
    return float(any(item in relevant for item in ranked[:k]))


def _mean(values: Iterable[float]) -> float:
    return round(float(np.mean(list(values))), 4)


BILINGUAL = Protocol(
    name="bilingual",
    prepare=_bilingual_prepare,
    variants=_bilingual_variants,
    baselines=lambda setup, options: {},
    personal=False,
    split_step=False,
    breakdown=_bilingual_breakdown,
)

PROTOCOLS = {
    protocol.name: protocol for protocol in (P1, P2, P3, P4, P4_VALIDATION, P4_VALIDATION_TEXT_MODEL, BILINGUAL)
}

# The floor's targets (#17): at least this share of the questions nothing answers are told so,
# at most this share of the answerable ones are.
NO_MATCH_TARGET = 0.80
WRONG_NO_MATCH_LIMIT = 0.05


@dataclass(frozen=True)
class FloorCalibration:
    model: str
    pairs: tuple[str, ...]
    floor: float
    none_told: float  # share of the calibration questions nothing answers that get "none"
    answerable_told: float  # share of the answerable calibration questions wrongly told "none"
    n_none: int
    n_answerable: int
    meets_targets: bool
    # With the card's English second opinion (serving.second_opinion) beside the floor: its model
    # and the same two shares, the calibration questions asked again as served.
    second_opinion: str | None = None
    second_none_told: float | None = None
    second_answerable_told: float | None = None


def match_floor_choose(similarities: list[tuple[float, bool]]) -> tuple[float, float, float]:
    """(floor, share of unanswerable questions below it, share of answerable ones below it)
    from (best similarity, answerable) per question: the floor that tells the most unanswerable
    questions "none" while wrongly telling at most WRONG_NO_MATCH_LIMIT of the answerable ones
    so; among equals, the lowest (fewest real answers hidden). Floors sit halfway between two
    observed similarities."""
    values = sorted({value for value, _answerable in similarities})
    answerable = [value for value, is_answerable in similarities if is_answerable]
    unanswerable = [value for value, is_answerable in similarities if not is_answerable]
    if not answerable or not unanswerable:
        raise EvaluationError("calibration needs answerable questions and questions nothing answers")
    best: tuple[float, float, float] | None = None
    for low, high in zip([values[0] - 1e-4, *values], [*values, values[-1] + 1e-4], strict=True):
        floor = round((low + high) / 2, 4)
        told = sum(value < floor for value in unanswerable) / len(unanswerable)
        wrong = sum(value < floor for value in answerable) / len(answerable)
        if wrong <= WRONG_NO_MATCH_LIMIT and (best is None or told > best[1]):
            best = (floor, told, wrong)
    assert best is not None  # the lowest floor hides nothing
    return best


def match_floor_calibrate(
    *,
    source: BundleSource,
    database: str,
    queries_file: str,
    pairs: tuple[str, ...] = BILINGUAL_PAIRS,
    progress: Progress = _no_progress,
) -> FloorCalibration:
    """The serving model's match floor from the CALIBRATION questions of the bilingual set (the
    test questions are never read): the demo catalog is built in its own database as the
    evaluation builds it, and each question asked through recommend_for_text with no floor.
    `pairs` keeps the questions of those language pairs only (an English-only model is
    calibrated on en-en: its Chinese answers are not what it is deployed for)."""
    from recommendations.ml.model_cards import model_card
    from recommendations.serving.answers import MATCH_NONE
    from recommendations.serving.service import recommend_for_text

    setup = _bilingual_prepare(source, Options(queries_file=queries_file))
    calibration = [
        key for key, label in setup.labels.items() if label["split"] == "calibration" and label["pair"] in pairs
    ]
    similarities: list[tuple[float, bool]] = []
    model_name = recommender_settings().serving_model
    second = model_card(model_name).english_second_opinion
    with isolated_database(database):
        _build(_in_memory_source(source, setup.items, setup.imported), {}, progress=progress)
        for text in progress(calibration, "calibration questions"):
            answer = recommend_for_text(text=text, k=1, log=False, match_floor=None)
            best = answer.best_similarity if answer.best_similarity is not None else -1.0
            similarities.append((best, text in setup.split.test))
        floor, told, wrong = match_floor_choose(similarities)
        # The floor is chosen on the serving model's similarity alone; the second opinion (its
        # own model's floor) is then measured beside it, as the API answers.
        told_none = (
            {
                text: recommend_for_text(text=text, k=1, log=False, match_floor=floor).match == MATCH_NONE
                for text in progress(calibration, "with the second opinion")
            }
            if second
            else {}
        )
    unanswerable_texts = [text for text in calibration if text not in setup.split.test]
    answerable_texts = [text for text in calibration if text in setup.split.test]
    return FloorCalibration(
        model=model_name,
        pairs=pairs,
        floor=floor,
        none_told=round(told, 4),
        answerable_told=round(wrong, 4),
        n_none=sum(not answerable for _value, answerable in similarities),
        n_answerable=sum(answerable for _value, answerable in similarities),
        meets_targets=told >= NO_MATCH_TARGET and wrong <= WRONG_NO_MATCH_LIMIT,
        second_opinion=second,
        second_none_told=_mean(told_none[text] for text in unanswerable_texts) if second else None,
        second_answerable_told=_mean(told_none[text] for text in answerable_texts) if second else None,
    )


def evaluate_p1(
    *,
    source: BundleSource,
    database: str,
    k: int = 20,
    test_fraction: float = 0.2,
    test_last: int | None = None,
    include_seen: bool = False,
    with_blend: bool = False,
    progress: Progress = _no_progress,
) -> Report:
    options = Options(
        k=k, test_fraction=test_fraction, test_last=test_last, include_seen=include_seen, with_blend=with_blend
    )
    return protocol_run(P1, source=source, database=database, options=options, progress=progress)


def evaluate_p2(*, source: BundleSource, database: str, k: int = 20, progress: Progress = _no_progress) -> Report:
    return protocol_run(P2, source=source, database=database, options=Options(k=k), progress=progress)


def evaluate_p3(*, source: BundleSource, database: str, k: int = 20, progress: Progress = _no_progress) -> Report:
    return protocol_run(P3, source=source, database=database, options=Options(k=k), progress=progress)
