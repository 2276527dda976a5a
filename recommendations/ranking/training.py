"""Training the re-ranker on logged interactions, as new versions.

Training (`ranker_train`, run by the Celery task and `manage.py train_ranker`):
1. Every person's interactions are sorted by (time, item); their last RANKER_LABEL_FRACTION
   (at least one) are the labels, the rest is their past.
2. A behaviour model is built from the past only (not served), so behaviour features do not
   already know the labels; popularity and trending are read as of each person's cut-off.
3. For each person (up to RANKER_MAX_PEOPLE, a seeded sample), the serving code itself
   (candidates.person_state / candidates_gather / features.features_compute) proposes and
   describes candidates as of their cut-off; a candidate is positive when it is in their labels.
4. Temporal split of the people: those whose cut-off is earlier train, the latest
   RANKER_VALIDATION_SHARE validate. Both algorithms are trained and validated, then refit on
   everyone; each becomes a RankerModel version with its validation NDCG@K next to every single
   source's and the blend's.
5. The best new version becomes active only if it beats, on this validation data, the best
   single source and the active version (re-scored on the same rows).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.db import transaction
from django.db.models import Max

from core.conf import recommender_settings
from recommendations.ml.ranker import Ranker, ndcg_of_groups, train_lambdarank, train_logistic_regression
from recommendations.models import BehaviourModel, RankerAlgorithm, RankerModel
from recommendations.ranking.active import RankerError, active_ranker, blend_scores, feature_matrix, ranker_activate
from recommendations.ranking.features import FEATURES, INDEX, features_compute
from recommendations.retrieval.behaviour_build import behaviour_model_build
from recommendations.retrieval.candidates import candidates_gather
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.person import person_state
from users.models import BEHAVIOUR_KINDS, Activity

MIN_INTERACTIONS = 5  # people with fewer have too little past to learn from


@dataclass
class TrainingData:
    matrix: np.ndarray
    labels: np.ndarray
    groups: list[int]  # rows per person, in the order of people
    relevant: list[int]  # each person's number of label items
    cutoffs: list[datetime]
    window: tuple[datetime | None, datetime | None] = (None, None)
    seconds: dict[str, float] = field(default_factory=dict)

    def labelled_people(self) -> list[int]:
        """People with at least one chosen candidate (the others teach a ranking nothing)."""
        starts = np.concatenate([[0], np.cumsum(self.groups)[:-1]]).astype(int)
        positives = np.add.reduceat(self.labels, starts) if self.groups else np.zeros(0)
        return [
            person
            for person, (size, count) in enumerate(zip(self.groups, positives, strict=True))
            if size and count > 0
        ]

    def select(self, people: list[int]) -> TrainingData:
        starts = np.concatenate([[0], np.cumsum(self.groups)])
        rows = np.concatenate([np.arange(starts[p], starts[p + 1]) for p in people]) if people else np.array([], int)
        return TrainingData(
            matrix=self.matrix[rows],
            labels=self.labels[rows],
            groups=[self.groups[p] for p in people],
            relevant=[self.relevant[p] for p in people],
            cutoffs=[self.cutoffs[p] for p in people],
        )


@dataclass(frozen=True)
class _Learner:
    """One person the ranker learns from: their past before the cut-off, and what came after."""

    user_id: int
    cutoff: datetime
    past: set[int]
    labels: set[int]  # items first chosen after the cut-off


@dataclass(frozen=True)
class _Past:
    """Every interaction before its person's cut-off: what the behaviour model of the past learns."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    times: np.ndarray


def _people_split(*, label_fraction: float) -> tuple[list[_Learner], _Past]:
    """Each person's interactions sorted by (time, item): the last label_fraction are labels, the
    rest their past (people with fewer than MIN_INTERACTIONS: all past, no labels)."""
    per_person: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    rows = Activity.objects.filter(item__isnull=False, kind__in=BEHAVIOUR_KINDS).values_list(
        "user_id", "item_id", "created_at"
    )
    for user_id, item_id, created_at in rows.order_by().iterator(chunk_size=20_000):
        per_person[user_id].append((created_at, item_id))
    past_users, past_items, past_times = [], [], []
    people: list[_Learner] = []
    for user_id, events in per_person.items():
        events.sort()
        n_labels = max(1, math.ceil(len(events) * label_fraction))
        head = events if len(events) < MIN_INTERACTIONS else events[: len(events) - n_labels]
        for created_at, item_id in head:
            past_users.append(user_id)
            past_items.append(item_id)
            past_times.append(created_at.timestamp())
        if len(events) >= MIN_INTERACTIONS:
            past = {item_id for _created_at, item_id in head}
            labels = {item_id for _created_at, item_id in events[len(head) :]} - past
            if labels:
                people.append(_Learner(user_id=user_id, cutoff=events[len(head)][0], past=past, labels=labels))
    past_of_everyone = _Past(
        user_ids=np.array(past_users, dtype=np.int64),
        item_ids=np.array(past_items, dtype=np.int64),
        times=np.array(past_times),
    )
    return people, past_of_everyone


def _people_sample(people: list[_Learner], *, max_people: int, seed: int) -> list[_Learner]:
    """A seeded sample, ordered by cut-off (the temporal split takes the latest to validate)."""
    people = sorted(people, key=lambda person: person.user_id)
    random.Random(seed).shuffle(people)
    return sorted(people[:max_people], key=lambda person: (person.cutoff, person.user_id))


def _training_rows(
    people: list[_Learner], *, behaviour_model_id: int, progress: Callable[[Iterable, str], Iterable]
) -> TrainingData:
    """The serving code's candidates and features of each person as of their cut-off."""
    model_name = recommender_settings().serving_model
    size = recommender_settings().candidates_per_source
    matrices, labels, groups, relevant, cutoffs = [], [], [], [], []
    for person in progress(people, "ranker training data"):
        state = person_state(user_id=person.user_id, model_name=model_name, as_of=person.cutoff)
        filters = ItemFilters(exclude_ids=frozenset(state.seen | person.past))
        candidates = candidates_gather(
            state=state, filters=filters, size=size, model_name=model_name, behaviour_model_id=behaviour_model_id
        )
        features_compute(state=state, candidates=candidates, model_name=model_name, size=size)
        if not candidates:
            continue
        ids = sorted(candidates)
        matrices.append(np.stack([candidates[item_id].feature_row() for item_id in ids]))
        labels.append(np.array([1.0 if item_id in person.labels else 0.0 for item_id in ids]))
        groups.append(len(ids))
        relevant.append(len(person.labels))
        cutoffs.append(person.cutoff)
    return TrainingData(
        matrix=np.concatenate(matrices) if matrices else np.zeros((0, len(FEATURES))),
        labels=np.concatenate(labels) if labels else np.zeros(0),
        groups=groups,
        relevant=relevant,
        cutoffs=cutoffs,
        window=(min(cutoffs) if cutoffs else None, max(cutoffs) if cutoffs else None),
    )


def training_data_build(
    *,
    label_fraction: float,
    max_people: int,
    seed: int = 0,
    progress: Callable[[Iterable, str], Iterable] = lambda rows, description: rows,
) -> TrainingData:
    """Candidates and features of each sampled person as of their cut-off, labelled by what
    they went on to choose. See the module docstring."""
    started = time.monotonic()
    people, past = _people_split(label_fraction=label_fraction)
    if not people:
        raise RankerError(f"no person has {MIN_INTERACTIONS} or more interactions yet: nothing to learn from")
    people = _people_sample(people, max_people=max_people, seed=seed)
    shadow = behaviour_model_build(user_ids=past.user_ids, item_ids=past.item_ids, times=past.times, activate=False)
    seconds = {"behaviour_model_of_the_past": round(time.monotonic() - started, 1)}
    try:
        data = _training_rows(people, behaviour_model_id=shadow.id, progress=progress)
    finally:
        BehaviourModel.objects.filter(pk=shadow.pk).delete()
    seconds["features"] = round(time.monotonic() - started - seconds["behaviour_model_of_the_past"], 1)
    data.seconds = seconds
    return data


def activation_refusals(*, score: float, best_source: float, active: float | None, k: int) -> list[str]:
    """Why a new version with this validation NDCG must not serve (empty: it may)."""
    reasons = []
    if score <= best_source:
        reasons.append(f"NDCG@{k} {score} does not beat the best single source ({best_source})")
    if active is not None and score <= active:
        reasons.append(f"NDCG@{k} {score} does not beat the active version ({active})")
    return reasons


def _single_source_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "behaviour": np.nan_to_num(matrix[:, INDEX["behaviour"]]),
        "semantic": np.nan_to_num(matrix[:, INDEX["semantic_best"]], nan=-1.0),
        "popular": matrix[:, INDEX["popularity"]],
        "blend": blend_scores(matrix),
    }


def _fit(algorithm: str, data: TrainingData) -> Ranker:
    if algorithm == RankerAlgorithm.LAMBDARANK:
        return train_lambdarank(data.matrix, data.labels, data.groups, list(FEATURES))
    if algorithm == RankerAlgorithm.LOGISTIC_REGRESSION:
        return train_logistic_regression(data.matrix, data.labels, list(FEATURES))
    raise RankerError(f"unknown ranker algorithm {algorithm!r}")


def _temporal_split(data: TrainingData, *, validation_share: float) -> tuple[TrainingData, TrainingData]:
    """The earlier people train, the latest validate; training keeps only people with a label."""
    n_people = len(data.groups)
    n_validation = max(1, round(n_people * validation_share))
    if n_people - n_validation < 1:
        raise RankerError(f"{n_people} people to learn from: too few to train and validate")
    training = data.select(list(range(n_people - n_validation)))
    validation = data.select(list(range(n_people - n_validation, n_people)))
    if training.labels.sum() == 0:
        raise RankerError("no candidate of the training people was chosen later: nothing to learn from")
    # People whose candidates hold no label teach a ranking nothing (every order scores 0).
    return training.select(training.labelled_people()), validation


def _active_ndcg(
    ndcg: Callable[[np.ndarray], float], validation: TrainingData
) -> tuple[RankerModel | None, float | None]:
    """The active version and its NDCG re-scored on this validation data (None: it cannot score)."""
    active_version, active_model = active_ranker()
    if active_model is None:
        return active_version, None
    try:
        return active_version, ndcg(active_model.score(feature_matrix(list(validation.matrix), active_model.features)))
    except RankerError:
        return active_version, None  # it reads features this version no longer computes: it cannot compete


def _versions_store(
    trained: list[tuple[Ranker, float, float]], *, data: TrainingData, k: int, shared_metrics: dict
) -> list[RankerModel]:
    """Each (ranker, validation NDCG, seconds) as a new RankerModel version, in one transaction."""
    versions = []
    with transaction.atomic():
        latest = RankerModel.objects.aggregate(latest=Max("version"))["latest"] or 0
        for offset, (ranker, validation_ndcg, train_seconds) in enumerate(trained, start=1):
            metrics = {
                f"ndcg@{k}": validation_ndcg,
                **shared_metrics,
                "train_seconds": train_seconds,
                "data_seconds": data.seconds,
            }
            versions.append(
                RankerModel.objects.create(
                    version=latest + offset,
                    algorithm=ranker.algorithm,
                    features=ranker.features,
                    trained_from=data.window[0],
                    trained_until=data.window[1],
                    validation_metrics=metrics,
                    artifact=ranker.to_bytes(),
                )
            )
    return versions


def _best_activate(
    versions: list[RankerModel], *, k: int, best_source: float, active_ndcg: float | None, activate: bool
) -> None:
    """Activate the best new version if it earns it; its notes say why or why not."""
    best = max(versions, key=lambda version: version.validation_metrics[f"ndcg@{k}"])
    score = best.validation_metrics[f"ndcg@{k}"]
    reasons = activation_refusals(score=score, best_source=best_source, active=active_ndcg, k=k)
    if activate and not reasons:
        ranker_activate(ranker=best)
        best.notes = f"activated: NDCG@{k} {score} beats every single source and the active version"
    else:
        best.notes = "not activated: " + ("; ".join(reasons) if reasons else "activation not asked for")
    best.save(update_fields=["notes"])


def ranker_train(
    *,
    label_fraction: float | None = None,
    validation_share: float | None = None,
    max_people: int | None = None,
    algorithms: tuple[str, ...] = (RankerAlgorithm.LAMBDARANK, RankerAlgorithm.LOGISTIC_REGRESSION),
    activate: bool = True,
    seed: int = 0,
    progress: Callable[[Iterable, str], Iterable] = lambda rows, description: rows,
) -> list[RankerModel]:
    """Train new ranker versions; activate the best if it earns it. Returns the new versions."""
    config = recommender_settings()
    k = config.ranker_validation_k
    data = training_data_build(
        label_fraction=label_fraction or config.ranker_label_fraction,
        max_people=max_people or config.ranker_max_people,
        seed=seed,
        progress=progress,
    )
    training, validation = _temporal_split(data, validation_share=validation_share or config.ranker_validation_share)

    def ndcg(scores: np.ndarray) -> float:
        return round(ndcg_of_groups(scores, validation.labels, validation.groups, k=k, relevant=validation.relevant), 4)

    baselines = {name: ndcg(scores) for name, scores in _single_source_scores(validation.matrix).items()}
    best_source = max(baselines[name] for name in ("behaviour", "semantic", "popular"))
    active_version, active_ndcg = _active_ndcg(ndcg, validation)
    started = time.monotonic()
    # Validated on the latest people, then refit on everyone (validation people included) with the
    # same settings: the stored model learns from the newest interactions too, and the figure
    # that decides activation is the held-out one.
    everyone = data.select(data.labelled_people())
    trained = []
    for algorithm in algorithms:
        step = time.monotonic()
        validated = _fit(algorithm, training)
        validation_ndcg = ndcg(validated.score(validation.matrix))
        trained.append((_fit(algorithm, everyone), validation_ndcg, round(time.monotonic() - step, 1)))
    shared_metrics = {
        "single_sources": {name: baselines[name] for name in ("behaviour", "semantic", "popular")},
        "blend": baselines["blend"],
        "active_version": active_version.version if active_version else None,
        "active_ndcg": active_ndcg,
        "training_people": len(training.groups),
        "refit_people": len(everyone.groups),
        "validation_people": len(validation.groups),
        "training_rows": int(len(training.labels)),
        "training_positives": int(training.labels.sum()),
    }
    versions = _versions_store(trained, data=data, k=k, shared_metrics=shared_metrics)
    logger.info(
        "rankers trained versions=%s seconds=%.1f",
        [version.version for version in versions],
        time.monotonic() - started,
    )
    _best_activate(versions, k=k, best_source=best_source, active_ndcg=active_ndcg, activate=activate)
    return versions


logger = logging.getLogger(__name__)
