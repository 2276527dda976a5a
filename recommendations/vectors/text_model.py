"""The learned text model: pairs from the catalog's own interactions, training and validation,
versions, their item vectors, activation, and the text space serving reads.

Training (`text_model_train`, run by the Celery task and `manage.py train_text_model`):
1. Pairs, all over the frozen encoder's vectors (the question's stored activity vector, the
   item's served vector, `served_item_vectors`):
   - a search or chat message -> the first item its writer clicked, carted or bought within
     TEXT_MODEL_WINDOW_MINUTES after it;
   - a tag, review or comment -> the item it is about (a review rated below NEGATIVE_RATING is
     left out: "leaked in the first rain" does not describe a waterproof tent);
   - optionally (TEXT_MODEL_SEQUENCE_PAIRS > 0, a seeded sample of at most that many) a
     person's last few items -> their next item.
2. Validation carved from training, forward in time: the question texts first written latest
   (TEXT_MODEL_VALIDATION_SHARE of the distinct texts) validate, with every pair of theirs, so
   the figure says how the model answers questions it never saw; the sequence pairs of the
   people active latest validate theirs (reported, not decisive: serving uses the model for
   free text). The figure is NDCG@RANKER_VALIDATION_K of ranking every item for each
   validation question, the frozen encoder's on the same questions beside it. The items are
   ranked as a question nobody asked yet meets them: the validation texts are taken out of
   their community vectors (_validation_item_vectors), else the frozen encoder finds each
   validation question's items by its own words in them and no version can beat it.
3. An adapter (ml/text_adapter.py; each answer against its batch's other answers, or against
   TEXT_MODEL_CATALOG_NEGATIVES items of the catalog) trains on the earlier pairs, stopping at
   its best validation epoch; it is refit on every pair for that many epochs and stored as a
   version.
4. It is activated only if it beats the frozen encoder on that validation, and the active
   version on the validation questions written since that one was trained (it learned from the
   older ones): its item vectors are written under its own key first, then one transaction
   flips the active flag (see text_model_activate for why no request sees a mix).

Too little data (a new install) refuses with TextModelError and leaves the frozen encoder
serving.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from catalog.models import ItemVector
from core.conf import recommender_settings
from core.exceptions import ApplicationError
from core.vector_indexes import vector_index_ensure
from core.vector_wire import VectorBytes, VectorDigest, vector_from_bytes
from recommendations.ml.text_adapter import (
    ALGORITHM,
    AdapterSettings,
    LinearAdapter,
    adapter_ndcg,
    adapter_train,
    normalised,
)
from recommendations.models import ExperimentArm, TextModel, text_model_vector_key
from users.models import BEHAVIOUR_KINDS, Activity, ActivityKind, ActivityVector

logger = logging.getLogger(__name__)


class TextModelError(ApplicationError):
    pass


QUESTION_KINDS = (ActivityKind.SEARCH, ActivityKind.CHAT)
CHOOSING_KINDS = (ActivityKind.CLICK, ActivityKind.ADD_TO_CART, ActivityKind.PURCHASE)
ABOUT_ITEM_KINDS = (ActivityKind.TAG, ActivityKind.REVIEW, ActivityKind.COMMENT)
# A text rated below this (ratings run 0.5-5) says what the item is not: no pair.
NEGATIVE_RATING = 2.5
# Fewer validation questions than this say nothing reliable about a version.
MIN_VALIDATION_QUESTIONS = 10
# Items averaged for the "recent items" side of a sequence pair.
SEQUENCE_HISTORY = 3
# Any constant unique to these jobs: a transaction-level lock taken by the activation and by
# every write of an item's text-model vector (text_model_items_refresh), so that an item
# embedded during an activation gets the new version's vector too (see text_model_activate).
VECTORS_LOCK_KEY = 7_304_377
# Only one training at a time (session-level, tried, never waited for).
TRAINING_LOCK_KEY = 7_304_378
# Questions whose best cosines carry the floor into a version's space (_floor_mapped).
FLOOR_QUESTIONS = 2_000
# Item vectors read and written per chunk: 2,000 rows of 384 floats are 3 MB.
VECTOR_CHUNK = 2_000

PAIR_KINDS = ("question_then_item", "text_about_item", "recent_items_then_next")
TEXT_KINDS = ("question_then_item", "text_about_item")


# --- the served item vector -----------------------------------------------------------------------


def served_item_vectors(
    *, model_name: str, item_ids: Sequence[int] | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
    """The item vectors free text is answered with under the frozen encoder, in chunks of
    (item ids, vectors, digests of those vectors): what the text model adapts, the catalog text
    and the community text composed (vectors.community). A text model's item vector keeps the
    digest of the served vector it was made from as its text_hash, so it is behind (items_behind)
    whenever the served vector changed: a new catalog text, new community text, a new weight."""
    rows = ItemVector.objects.filter(model_name=model_name)
    if item_ids is not None:
        rows = rows.filter(item_id__in=list(item_ids))
    ids = list(rows.order_by("item_id").values_list("item_id", flat=True))
    for start in range(0, len(ids), VECTOR_CHUNK):
        chunk = ids[start : start + VECTOR_CHUNK]
        found = (
            ItemVector.objects.filter(model_name=model_name, item_id__in=chunk)
            .annotate(raw=VectorBytes("embedding"), digest=VectorDigest("embedding"))
            .order_by("item_id")
            .values_list("item_id", "raw", "digest")
        )
        item_id_list, vectors, digests = [], [], []
        for item_id, raw, digest in found:
            item_id_list.append(item_id)
            vectors.append(vector_from_bytes(raw))
            digests.append(digest)
        if item_id_list:
            yield np.array(item_id_list, dtype=np.int64), np.stack(vectors), digests


def _all_served_item_vectors(model_name: str) -> tuple[np.ndarray, np.ndarray]:
    chunks = list(served_item_vectors(model_name=model_name))
    if not chunks:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.concatenate([ids for ids, _v, _h in chunks]), np.concatenate([vectors for _i, vectors, _h in chunks])


# --- pairs ----------------------------------------------------------------------------------------


@dataclass
class Pairs:
    """(query vector -> item) pairs: the group says which question (text) or person each is."""

    queries: np.ndarray  # (n, d)
    item_ids: np.ndarray  # (n,)
    groups: list[str]
    kinds: list[str]
    times: list[datetime]

    def __len__(self) -> int:
        return len(self.item_ids)

    def select(self, rows: list[int]) -> Pairs:
        return Pairs(
            queries=self.queries[rows] if rows else self.queries[:0],
            item_ids=self.item_ids[rows] if rows else self.item_ids[:0],
            groups=[self.groups[row] for row in rows],
            kinds=[self.kinds[row] for row in rows],
            times=[self.times[row] for row in rows],
        )

    def counts(self) -> dict[str, int]:
        return {kind: self.kinds.count(kind) for kind in PAIR_KINDS}


def _question_key(text: str) -> str:
    return " ".join(text.lower().split())


def _text_pairs(base_model: str) -> list[tuple[int, int, str, str, datetime]]:
    """(activity id, item id, question key, kind, time) of every text pair."""
    config = recommender_settings()
    window = timedelta(minutes=config.text_model_window_minutes)
    embedded = ActivityVector.objects.filter(activity_id=OuterRef("id"), model_name=base_model)
    about = (
        Activity.objects.filter(kind__in=ABOUT_ITEM_KINDS, item__isnull=False, text__isnull=False)
        .filter(Q(rating__isnull=True) | Q(rating__gte=NEGATIVE_RATING))
        .filter(Exists(embedded))
        .values_list("id", "item_id", "text", "created_at")
    )
    chosen_next = (
        Activity.objects.filter(
            user_id=OuterRef("user_id"),
            kind__in=CHOOSING_KINDS,
            item__isnull=False,
            created_at__gt=OuterRef("created_at"),
            created_at__lte=OuterRef("created_at") + window,
        )
        .order_by("created_at", "id")
        .values("item_id")[:1]
    )
    questions = (
        Activity.objects.filter(kind__in=QUESTION_KINDS, text__isnull=False)
        .filter(Exists(embedded))
        .annotate(chosen=Subquery(chosen_next))
        .filter(chosen__isnull=False)
        .values_list("id", "chosen", "text", "created_at")
    )
    pairs = [
        (activity_id, item_id, _question_key(text or ""), "text_about_item", created_at)
        for activity_id, item_id, text, created_at in about.order_by().iterator(chunk_size=5_000)
    ]
    pairs += [
        (activity_id, item_id, _question_key(text or ""), "question_then_item", created_at)
        for activity_id, item_id, text, created_at in questions.order_by().iterator(chunk_size=5_000)
    ]
    return pairs


def _activity_vectors(activity_ids: list[int], base_model: str) -> dict[int, np.ndarray]:
    found: dict[int, np.ndarray] = {}
    for start in range(0, len(activity_ids), VECTOR_CHUNK):
        rows = (
            ActivityVector.objects.filter(
                activity_id__in=activity_ids[start : start + VECTOR_CHUNK], model_name=base_model
            )
            .annotate(raw=VectorBytes("embedding"))
            .values_list("activity_id", "raw")
        )
        found.update((activity_id, vector_from_bytes(raw)) for activity_id, raw in rows)
    return found


def _sequence_pairs(
    *, limit: int, item_index: dict[int, int], item_vectors: np.ndarray, seed: int
) -> list[tuple[np.ndarray, int, str, datetime]]:
    """A seeded sample of (mean of a person's last SEQUENCE_HISTORY items -> their next item)."""
    if limit <= 0:
        return []
    per_person: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    rows = Activity.objects.filter(item__isnull=False, kind__in=BEHAVIOUR_KINDS).values_list(
        "user_id", "item_id", "created_at"
    )
    for user_id, item_id, created_at in rows.order_by().iterator(chunk_size=20_000):
        if item_id in item_index:
            per_person[user_id].append((created_at, item_id))
    candidates = []
    for user_id, events in sorted(per_person.items()):
        events.sort()
        candidates += [(user_id, events, position) for position in range(SEQUENCE_HISTORY, len(events))]
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(candidates))[:limit]
    pairs = []
    for index in sorted(chosen):
        user_id, events, position = candidates[index]
        history = [item_index[item_id] for _created_at, item_id in events[position - SEQUENCE_HISTORY : position]]
        query = normalised(item_vectors[history].mean(axis=0))
        pairs.append((query, events[position][1], f"person {user_id}", events[position][0]))
    return pairs


def training_pairs(*, base_model: str, item_index: dict[int, int], item_vectors: np.ndarray, seed: int = 0) -> Pairs:
    """Every pair the catalog's own interactions give (module docstring, step 1)."""
    config = recommender_settings()
    text = [pair for pair in _text_pairs(base_model) if pair[1] in item_index]
    vectors = _activity_vectors([activity_id for activity_id, *_rest in text], base_model)
    text = [pair for pair in text if pair[0] in vectors]
    sequences = _sequence_pairs(
        limit=config.text_model_sequence_pairs, item_index=item_index, item_vectors=item_vectors, seed=seed
    )
    dimensions = item_vectors.shape[1] if item_vectors.ndim == 2 else 0
    queries = [vectors[activity_id] for activity_id, *_rest in text] + [query for query, *_rest in sequences]
    return Pairs(
        queries=np.stack(queries).astype(np.float32) if queries else np.zeros((0, dimensions), np.float32),
        item_ids=np.array([pair[1] for pair in text] + [pair[1] for pair in sequences], dtype=np.int64),
        groups=[pair[2] for pair in text] + [pair[2] for pair in sequences],
        kinds=[pair[3] for pair in text] + ["recent_items_then_next"] * len(sequences),
        times=[pair[4] for pair in text] + [pair[3] for pair in sequences],
    )


def forward_split(pairs: Pairs, *, validation_share: float) -> tuple[Pairs, Pairs]:
    """Later questions and later people validate (module docstring, step 2).

    Questions (distinct texts) are ordered by when they were first written, people by when they
    were last active; the latest validation_share of each validate with all their pairs.
    """
    text_groups: dict[str, datetime] = {}
    person_groups: dict[str, datetime] = {}
    for group, kind, moment in zip(pairs.groups, pairs.kinds, pairs.times, strict=True):
        if kind == "recent_items_then_next":
            person_groups[group] = max(person_groups.get(group, moment), moment)
        else:
            text_groups[group] = min(text_groups.get(group, moment), moment)
    validating: set[str] = set()
    for groups in (text_groups, person_groups):
        ordered = sorted(groups, key=lambda group: (groups[group], group))
        n_validation = math.ceil(len(ordered) * validation_share) if ordered else 0
        validating |= set(ordered[len(ordered) - n_validation :])
    training = [row for row, group in enumerate(pairs.groups) if group not in validating]
    validation = [row for row, group in enumerate(pairs.groups) if group in validating]
    return pairs.select(training), pairs.select(validation)


@dataclass(frozen=True)
class Questions:
    """Validation questions: one query vector each and the items (rows of the item matrix) it led to."""

    queries: np.ndarray
    relevant: list[set[int]]
    first_written: list[datetime]

    def since(self, moment: datetime) -> Questions:
        """The questions first written after moment."""
        rows = [row for row, written in enumerate(self.first_written) if written > moment]
        return Questions(
            queries=self.queries[rows] if rows else self.queries[:0],
            relevant=[self.relevant[row] for row in rows],
            first_written=[self.first_written[row] for row in rows],
        )


def questions_of(pairs: Pairs, *, item_index: dict[int, int], sequences: bool = False) -> Questions:
    first: dict[str, int] = {}
    written: dict[str, datetime] = {}
    relevant: dict[str, set[int]] = defaultdict(set)
    for row, (group, kind, moment) in enumerate(zip(pairs.groups, pairs.kinds, pairs.times, strict=True)):
        if (kind == "recent_items_then_next") != sequences:
            continue
        first.setdefault(group, row)
        written[group] = min(written.get(group, moment), moment)
        relevant[group].add(item_index[int(pairs.item_ids[row])])
    groups = sorted(first)
    queries = pairs.queries[[first[group] for group in groups]] if groups else pairs.queries[:0]
    return Questions(
        queries=queries, relevant=[relevant[group] for group in groups], first_written=[written[g] for g in groups]
    )


def _validation_item_vectors(
    base_model: str, *, item_index: dict[int, int], item_vectors: np.ndarray, questions: Pairs
) -> tuple[np.ndarray, int]:
    """The served item vectors with every text that reads as one of the validation questions
    taken out of their community vectors (vectors.community.served_vectors_without), and how
    many items changed."""
    from recommendations.vectors.community import served_vectors_without

    keys = sorted({group for group, kind in zip(questions.groups, questions.kinds, strict=True) if kind in TEXT_KINDS})
    if not keys:
        return item_vectors, 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT id FROM users_activity
            WHERE text IS NOT NULL AND kind = ANY(%s)
              AND lower(regexp_replace(btrim(text), '\\s+', ' ', 'g')) = ANY(%s)
            """,
            [[str(kind) for kind in (*ABOUT_ITEM_KINDS, *QUESTION_KINDS)], keys],
        )
        hidden = [row[0] for row in cursor.fetchall()]
    recombined = served_vectors_without(model_name=base_model, activity_ids=hidden)
    vectors = item_vectors.copy()
    changed = 0
    for item_id, vector in recombined.items():
        if (row := item_index.get(item_id)) is not None:
            vectors[row] = vector
            changed += 1
    return vectors, changed


# --- training -------------------------------------------------------------------------------------


def _group_numbers(groups: list[str]) -> np.ndarray:
    """One integer per question (or person): the adapter masks a question's other answers."""
    numbers: dict[str, int] = {}
    return np.array([numbers.setdefault(group, len(numbers)) for group in groups], dtype=np.int64)


def _floor_mapped(base_floor: float | None, *, base_best: np.ndarray, adapted_best: np.ndarray) -> float | None:
    """The frozen encoder's free-text floor carried into the adapter's space: the floor that
    tells the same share of the catalog's own questions "nothing is close" (their best cosines
    under each, quantile to quantile). None when the encoder has none."""
    if base_floor is None or len(base_best) == 0:
        return None
    share = float(np.mean(base_best < base_floor))
    if share == 0.0:
        return round(float(adapted_best.min() - (base_best.min() - base_floor)), 4)
    return round(float(np.quantile(adapted_best, share)), 4)


@dataclass(frozen=True)
class ActiveComparison:
    """The active version against the new one, on the validation questions it never saw."""

    version: int | None = None
    ndcg: float | None = None  # the active version's figure
    new_ndcg: float | None = None  # the new version's, on the same questions
    questions: int = 0
    refusal: str | None = None  # why the new version cannot be shown to be better


def _active_comparison(
    base_model: str,
    questions: Questions,
    item_vectors: np.ndarray,
    adapter: LinearAdapter,
    k: int,
) -> ActiveComparison:
    """The active version was refit on every pair up to its trained_until, the validation
    questions of now included: compared on those it would win by having seen them. So both are
    scored on the validation questions first written after it was trained; with too few such
    questions the new version cannot show it is better (and is not activated)."""
    active = TextModel.objects.filter(base_model=base_model, is_active=True).first()
    if active is None:
        return ActiveComparison()
    active_adapter = LinearAdapter.from_bytes(active.artifact)
    if active_adapter.dimensions != item_vectors.shape[1]:
        return ActiveComparison(version=active.version)
    unseen = questions.since(active.trained_until) if active.trained_until else questions
    if len(unseen.relevant) < MIN_VALIDATION_QUESTIONS:
        return ActiveComparison(
            version=active.version,
            questions=len(unseen.relevant),
            refusal=(
                f"{len(unseen.relevant)} validation questions were written since the active version "
                f"v{active.version} was trained, at least {MIN_VALIDATION_QUESTIONS} are needed to compare with it"
            ),
        )

    def figure(candidate: LinearAdapter) -> float:
        return round(
            adapter_ndcg(candidate, queries=unseen.queries, items=item_vectors, relevant=unseen.relevant, k=k), 4
        )

    return ActiveComparison(
        version=active.version,
        ndcg=figure(active_adapter),
        new_ndcg=figure(adapter),
        questions=len(unseen.relevant),
    )


def text_model_train(
    *, activate: bool = True, seed: int = 0, hyper: AdapterSettings | None = None, epochs: int | None = None
) -> TextModel:
    """Train, validate and store a new version; activate it if it earns it (module docstring).

    hyper: the adapter's hyper-parameters (None: TEXT_MODEL_TEMPERATURE and _LEARNING_RATE, the
    other AdapterSettings defaults). epochs: the refit's
    epochs (None: the validation's best epoch); the validation is run and reported either way."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [TRAINING_LOCK_KEY])
        if not cursor.fetchone()[0]:
            raise TextModelError("a text model is being trained already")
    try:
        config = recommender_settings()
        hyper = hyper or AdapterSettings(
            temperature=config.text_model_temperature,
            learning_rate=config.text_model_learning_rate,
            catalog_negatives=config.text_model_catalog_negatives,
        )
        return _train(activate=activate, seed=seed, hyper=hyper, epochs=epochs)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [TRAINING_LOCK_KEY])


def _train(*, activate: bool, seed: int, hyper: AdapterSettings, epochs: int | None) -> TextModel:
    from recommendations.ml.model_cards import model_card

    started = time.monotonic()
    config = recommender_settings()
    base_model = config.serving_model
    k = config.ranker_validation_k
    item_ids, item_vectors = _all_served_item_vectors(base_model)
    if len(item_ids) < 2:
        raise TextModelError(
            f"no text model trained: {len(item_ids)} items have {base_model} vectors; "
            "the frozen encoder keeps answering"
        )
    item_index = {int(item_id): row for row, item_id in enumerate(item_ids)}
    pairs = training_pairs(base_model=base_model, item_index=item_index, item_vectors=item_vectors, seed=seed)
    counts = pairs.counts()
    n_text = counts["question_then_item"] + counts["text_about_item"]
    if n_text < config.text_model_min_pairs:
        raise TextModelError(
            f"no text model trained: {n_text} (text -> item) pairs, at least {config.text_model_min_pairs} are "
            "needed (TEXT_MODEL_MIN_PAIRS); the frozen encoder keeps answering"
        )
    training, validation = forward_split(pairs, validation_share=config.text_model_validation_share)
    questions = questions_of(validation, item_index=item_index)
    if len(questions.relevant) < MIN_VALIDATION_QUESTIONS:
        raise TextModelError(
            f"no text model trained: {len(questions.relevant)} distinct questions to validate on, at least "
            f"{MIN_VALIDATION_QUESTIONS} are needed; the frozen encoder keeps answering"
        )
    prepared = time.monotonic()

    # The items as a question nobody has asked yet meets them: without the validation texts in
    # their community vectors (else the frozen encoder finds each validation question's items by
    # its own words and no model can be shown to beat it).
    validation_items, recombined = _validation_item_vectors(
        base_model, item_index=item_index, item_vectors=item_vectors, questions=validation
    )

    def validate(adapter: LinearAdapter) -> float:
        return adapter_ndcg(
            adapter, queries=questions.queries, items=validation_items, relevant=questions.relevant, k=k
        )

    frozen = round(validate(LinearAdapter.identity(item_vectors.shape[1])), 4)
    train_rows = [item_index[int(item_id)] for item_id in training.item_ids]
    validated = adapter_train(
        query_vectors=training.queries,
        item_vectors=item_vectors,
        pair_items=np.array(train_rows),
        pair_groups=_group_numbers(training.groups),
        validate=validate,
        seed=seed,
        hyper=hyper,
    )
    score = round(validate(validated.adapter), 4)
    sequence_questions = questions_of(validation, item_index=item_index, sequences=True)
    sequence_figures = {}
    if sequence_questions.relevant:
        sequence_figures = {
            f"sequence_ndcg@{k}": round(
                adapter_ndcg(
                    validated.adapter,
                    queries=sequence_questions.queries,
                    items=item_vectors,
                    relevant=sequence_questions.relevant,
                    k=k,
                ),
                4,
            ),
            f"sequence_frozen_ndcg@{k}": round(
                adapter_ndcg(
                    LinearAdapter.identity(item_vectors.shape[1]),
                    queries=sequence_questions.queries,
                    items=item_vectors,
                    relevant=sequence_questions.relevant,
                    k=k,
                ),
                4,
            ),
        }
    active = _active_comparison(base_model, questions, validation_items, validated.adapter, k)
    # Refit on every pair (the validation's too) for the epochs the validation chose: the stored
    # model learns the newest questions as well; the held-out figure is what decides.
    refit = adapter_train(
        query_vectors=pairs.queries,
        item_vectors=item_vectors,
        pair_items=np.array([item_index[int(item_id)] for item_id in pairs.item_ids]),
        pair_groups=_group_numbers(pairs.groups),
        epochs=max(1, validated.epochs) if epochs is None else epochs,
        seed=seed,
        hyper=hyper,
    )
    everything = questions_of(pairs, item_index=item_index).queries
    # A seeded sample keeps the (questions x items) products small on a large catalog.
    sample = everything[np.random.default_rng(seed).permutation(len(everything))[:FLOOR_QUESTIONS]]
    base_best = (normalised(sample) @ normalised(item_vectors).T).max(axis=1)
    adapted_best = (refit.adapter.queries(sample) @ refit.adapter.items(item_vectors).T).max(axis=1)
    metrics = {
        f"ndcg@{k}": score,
        f"frozen_ndcg@{k}": frozen,
        "active_version": active.version,
        "active_comparison": {
            "questions": active.questions,
            "active_ndcg": active.ndcg,
            "new_ndcg": active.new_ndcg,
        },
        **sequence_figures,
        "validation_questions": len(questions.relevant),
        "validation_items_without_their_texts": recombined,
        "validation_pairs": len(validation),
        "training_pairs": len(training),
        "best_epoch": validated.epochs,
        "refit_epochs": refit.epochs,
        "hyper_parameters": asdict(hyper),
        "curve": validated.curve,
        "seconds": {
            "pairs": round(prepared - started, 1),
            "validated_training": validated.seconds,
            "refit": refit.seconds,
        },
    }
    with transaction.atomic():
        latest = TextModel.objects.aggregate(latest=Max("version"))["latest"] or 0
        version = TextModel.objects.create(
            version=latest + 1,
            algorithm=ALGORITHM,
            base_model=base_model,
            dimensions=item_vectors.shape[1],
            trained_from=min(pairs.times),
            trained_until=max(pairs.times),
            training_pairs=counts,
            validation_metrics=metrics,
            match_floor=_floor_mapped(
                model_card(base_model).match_floor, base_best=base_best, adapted_best=adapted_best
            ),
            artifact=refit.adapter.to_bytes(),
        )
    refusals = activation_refusals(score=score, frozen=frozen, active=active, k=k)
    if activate and not refusals:
        text_model_activate(text_model=version, adapter=refit.adapter)
        version.notes = f"activated: NDCG@{k} {score} beats the frozen encoder ({frozen}) on the later questions"
    else:
        version.notes = "not activated: " + ("; ".join(refusals) if refusals else "activation not asked for")
    version.save(update_fields=["notes"])
    logger.info(
        "text model v%d trained pairs=%d validation ndcg=%s frozen=%s active=%s seconds=%.1f",
        version.version,
        len(pairs),
        score,
        frozen,
        version.is_active,
        time.monotonic() - started,
    )
    return version


def activation_refusals(*, score: float, frozen: float, active: ActiveComparison, k: int) -> list[str]:
    """Why a new version with this validation NDCG must not serve (empty: it may)."""
    reasons = []
    if score <= frozen:
        reasons.append(f"NDCG@{k} {score} does not beat the frozen encoder ({frozen})")
    if active.refusal:
        reasons.append(active.refusal)
    elif active.ndcg is not None and active.new_ndcg is not None and active.new_ndcg <= active.ndcg:
        reasons.append(
            f"NDCG@{k} {active.new_ndcg} does not beat the active version v{active.version} ({active.ndcg}) "
            f"on the {active.questions} questions written since it was trained"
        )
    return reasons


# --- item vectors and activation ------------------------------------------------------------------


def _write_adapted(text_model: TextModel, adapter: LinearAdapter, item_ids: Sequence[int] | None) -> int:
    key = text_model.vector_key
    written = 0
    now = timezone.now()
    for ids, vectors, digests in served_item_vectors(model_name=text_model.base_model, item_ids=item_ids):
        adapted = adapter.items(vectors)
        ItemVector.objects.bulk_create(
            [
                ItemVector(
                    item_id=int(item_id),
                    model_name=key,
                    dimensions=adapter.dimensions,
                    embedding=vector,
                    text_hash=digest,
                    created_at=now,
                )
                for item_id, vector, digest in zip(ids, adapted, digests, strict=True)
            ],
            update_conflicts=True,
            unique_fields=["item_id", "model_name"],
            update_fields=["dimensions", "embedding", "text_hash", "created_at"],
        )
        written += len(ids)
    return written


def items_behind(text_model: TextModel) -> list[int]:
    """Items whose served vector has no vector of this version made from it as it is now (the
    digest of the served vector, served_item_vectors: its catalog text and community text)."""
    current = ItemVector.objects.filter(
        item_id=OuterRef("item_id"), model_name=text_model.vector_key, text_hash=OuterRef("digest")
    )
    return list(
        ItemVector.objects.filter(model_name=text_model.base_model)
        .annotate(digest=VectorDigest("embedding"))
        .exclude(Exists(current))
        .values_list("item_id", flat=True)
    )


def _lock_vectors() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [VECTORS_LOCK_KEY])


def text_models_kept() -> QuerySet[TextModel]:
    """The versions whose item vectors are kept current: the active ones, and those an arm of an
    experiment that has not ended names (they serve its people; a scheduled one will)."""
    named = ExperimentArm.objects.filter(
        text_model__isnull=False, experiment__end_at__gt=timezone.now(), experiment__simulated=False
    ).values("text_model_id")
    return TextModel.objects.filter(Q(is_active=True) | Q(pk__in=named))


def _vectors_prepare(text_model: TextModel, adapter: LinearAdapter) -> None:
    """Its index, then its item vectors under its own key, written while others serve."""
    if connection.in_atomic_block:
        # Inside a caller's transaction (a test's) PostgreSQL refuses CREATE INDEX while the
        # deferred foreign-key checks of vectors written earlier in it are pending: run them now.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    # Outside a transaction the index is built CONCURRENTLY: serving never waits for it.
    vector_index_ensure(
        table=ItemVector._meta.db_table, model_name=text_model.vector_key, dimensions=adapter.dimensions
    )
    _write_adapted(text_model, adapter, None)


def text_model_vectors_write(*, text_model: TextModel) -> int:
    """Write this version's item vectors without activating it, so that an experiment's arm can
    serve it (recommendations.experiments refuses a version without them). Once an experiment
    names it they are kept current like the active version's (text_models_kept); until then an
    item embedded meanwhile is caught up by the next call or the sweep. Returns rows written."""
    if not text_model.artifact:
        raise TextModelError(f"text model v{text_model.version} is not trained (no model stored)")
    adapter = LinearAdapter.from_bytes(text_model.artifact)
    _vectors_prepare(text_model, adapter)
    with transaction.atomic():
        _vectors_catch_up(text_model, adapter)
        TextModel.objects.filter(pk=text_model.pk).update(vectors_written_at=timezone.now())
    written = ItemVector.objects.filter(model_name=text_model.vector_key).count()
    logger.info("text model v%d item vectors written rows=%d", text_model.version, written)
    return written


def _vectors_catch_up(text_model: TextModel, adapter: LinearAdapter) -> int:
    """Inside the caller's transaction, holding VECTORS_LOCK_KEY: the items embedded since the
    version's vectors were prepared get theirs. Returns how many."""
    _lock_vectors()
    behind = items_behind(text_model)
    if behind:
        _write_adapted(text_model, adapter, behind)
    return len(behind)


def text_model_activate(*, text_model: TextModel, adapter: LinearAdapter | None = None) -> TextModel:
    """Make this version answer free text (staff may roll back to any stored version).

    Its item vectors are written under its own key before the flip, while the previous model
    (or the frozen encoder) keeps serving from its own; then, in one transaction holding
    VECTORS_LOCK_KEY, the items embedded meanwhile are caught up and the active flag moves.
    A request reads the active row once and takes its query map and its item key from it, so
    it sees either the old model whole or the new one whole. An item embedded during the
    activation waits for the lock in text_model_items_refresh and then writes the new
    version's vector, or wrote the old one's before and is caught up here.
    """
    adapter = adapter or LinearAdapter.from_bytes(text_model.artifact)
    _vectors_prepare(text_model, adapter)
    with transaction.atomic():
        caught_up = _vectors_catch_up(text_model, adapter)
        previous = list(
            TextModel.objects.select_for_update()
            .filter(base_model=text_model.base_model, is_active=True)
            .exclude(pk=text_model.pk)
            .values_list("version", flat=True)
        )
        TextModel.objects.filter(base_model=text_model.base_model, is_active=True).exclude(pk=text_model.pk).update(
            is_active=False
        )
        TextModel.objects.filter(pk=text_model.pk).update(is_active=True, vectors_written_at=timezone.now())
    text_model.is_active = True
    _stale_vectors_drop(text_model.base_model, keep={text_model.version, *previous})
    logger.info("text model v%d active (items caught up: %d)", text_model.version, caught_up)
    return text_model


def text_model_deactivate(*, base_model: str) -> int:
    """Back to the frozen encoder for free text. Returns how many versions were active (0 or 1)."""
    return TextModel.objects.filter(base_model=base_model, is_active=True).update(is_active=False)


def _stale_vectors_drop(base_model: str, *, keep: set[int]) -> int:
    """Item vectors of versions neither active, nor the one it replaced (a request that read the
    previous active row a moment before the flip still finds its vectors), nor named by an
    experiment that has not ended (its arm serves them)."""
    keep = keep | set(text_models_kept().filter(base_model=base_model).values_list("version", flat=True))
    dropped = [
        version
        for version in TextModel.objects.filter(base_model=base_model).values_list("version", flat=True)
        if version not in keep
    ]
    if not dropped:
        return 0
    keys = [text_model_vector_key(base_model, version) for version in dropped]
    deleted, _per_model = ItemVector.objects.filter(model_name__in=keys).delete()
    TextModel.objects.filter(base_model=base_model, version__in=dropped).update(vectors_written_at=None)
    return deleted


def text_model_items_refresh(*, item_ids: Sequence[int]) -> int:
    """After items were (re-)embedded: their vectors under the active text models and those
    experiments serve (text_models_kept). Returns rows written."""
    if not item_ids or not TextModel.objects.exists():
        return 0
    written = 0
    with transaction.atomic():
        _lock_vectors()
        for text_model in text_models_kept():
            written += _write_adapted(text_model, _adapter_of(text_model.id, text_model.artifact), item_ids)
    return written


def text_model_vectors_catch_up() -> int:
    """The sweep's part: items whose vector of a kept text model is missing or stale (a task
    that stopped between the item's vector and its text-model vector, an item embedded before
    an experiment named the version)."""
    written = 0
    for text_model in text_models_kept().defer("artifact"):
        behind = items_behind(text_model)
        if behind:
            written += text_model_items_refresh(item_ids=behind)
    return written


def text_model_vectors_behind_count() -> int:
    return sum(len(items_behind(text_model)) for text_model in text_models_kept().defer("artifact"))


# --- what serving reads ---------------------------------------------------------------------------


_adapters: dict[int, LinearAdapter] = {}
_adapters_lock = threading.Lock()


# Versions' adapters kept per process: the active one, the one it replaced and an experiment's
# arms (at most experiments.services.MAX_ARMS) alternate from request to request; a 384 x 384
# adapter is 0.6 MB.
ADAPTERS_KEPT = 8


def _adapter_of(text_model_id: int, artifact: bytes | memoryview | None = None) -> LinearAdapter:
    """The version's adapter, read once per process (the ADAPTERS_KEPT last used are kept)."""
    with _adapters_lock:
        adapter = _adapters.pop(text_model_id, None)
        if adapter is not None:
            _adapters[text_model_id] = adapter  # the most recently used last
    if adapter is None:
        if artifact is None:
            artifact = TextModel.objects.filter(id=text_model_id).values_list("artifact", flat=True).get()
        adapter = LinearAdapter.from_bytes(artifact)
        with _adapters_lock:
            _adapters[text_model_id] = adapter
            while len(_adapters) > ADAPTERS_KEPT:
                del _adapters[next(iter(_adapters))]
    return adapter


def reset_text_models() -> None:
    with _adapters_lock:
        _adapters.clear()


@dataclass(frozen=True)
class TextSpace:
    """Where free text is answered: the frozen encoder's space, or a text model's."""

    base_model: str  # the encoder that reads the text
    item_model: str  # the model name of the item vectors searched
    text_model_id: int | None = None
    version: int | None = None
    adapter: LinearAdapter | None = None
    match_floor: float | None = None  # the version's floor (None: the base card's applies)

    @property
    def is_frozen(self) -> bool:
        return self.adapter is None

    def query(self, encoded: np.ndarray) -> np.ndarray:
        """The query vector searched with, from the frozen encoder's vector of the text."""
        return encoded if self.adapter is None else self.adapter.queries(encoded)


def text_space(*, base_model: str, frozen: bool = False) -> TextSpace:
    """The active text model of this encoder (one small query), or the frozen encoder."""
    if not frozen:
        row = (
            TextModel.objects.filter(base_model=base_model, is_active=True)
            .values_list("id", "version", "match_floor")
            .first()
        )
        if row is not None:
            text_model_id, version, floor = row
            return text_space_of(base_model=base_model, text_model_id=text_model_id, version=version, match_floor=floor)
    return TextSpace(base_model=base_model, item_model=base_model)


def text_space_of(*, base_model: str, text_model_id: int, version: int, match_floor: float | None) -> TextSpace:
    """One stored version's space, from the row's fields the caller read (an experiment's arm
    pins a version, active or not): its query map and its own item vectors, never a mix."""
    return TextSpace(
        base_model=base_model,
        item_model=text_model_vector_key(base_model, version),
        text_model_id=text_model_id,
        version=version,
        adapter=_adapter_of(text_model_id),
        match_floor=match_floor,
    )
