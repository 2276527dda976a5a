"""Training the re-ranker on logged interactions, as new versions.

Training (`ranker_train`, run by the Celery task and `manage.py train_ranker`):
1. Every person's interactions are sorted by (time, item); their last RANKER_LABEL_FRACTION
   (at least one) are the labels, the rest is their past. Everyone with a past and a label
   learns (MIN_INTERACTIONS: two interactions; RANKER_MAX_PEOPLE 0 reads everyone, else a
   seeded sample of that many).
2. Items made cold on purpose: a seeded RANKER_COLD_SHARE of the items with COLD_MIN_EVENTS or
   more interactions (protocol P2's rule) lose every interaction as of the cut-offs: the
   behaviour model of the past never sees them and their popularity, trend, age and evidence
   read as none (features_compute(hidden_items=...)). So the ranker meets items it knows only
   by their text, chosen or not, and learns when to trust text instead of behaviour.
3. A behaviour model is built from the past only (not served), so behaviour features do not
   already know the labels; popularity and trending are read as of each person's cut-off.
4. For each person the serving code itself (person_state / candidates_gather /
   features_compute) proposes and describes candidates as of their cut-off; a candidate is
   positive when it is in their labels. A person with a label among the cold items also gets a
   second group: the cold items alone ranked for them, the question P2 asks of the served system.
5. Temporal split of the people: those whose cut-off is earlier train, the latest
   RANKER_VALIDATION_SHARE validate (all their groups). Both algorithms are trained and
   validated, then refit on everyone; each becomes a RankerModel version with its validation
   NDCG@K (over every validation group, and warm and cold apart) next to every single source's
   and the blend's on the same groups.
6. The best new version becomes active only if it beats, on this validation data, the best
   single source and the active version (re-scored on the same rows).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import cast

import numpy as np
from django.db import transaction
from django.db.models import Max

from core.conf import recommender_settings
from recommendations.ml.ranker import Ranker, ndcg_of_groups, train_lambdarank, train_logistic_regression
from recommendations.models import BehaviourModel, RankerAlgorithm, RankerModel
from recommendations.ranking.active import RankerError, active_ranker, blend_scores, feature_matrix, ranker_activate
from recommendations.ranking.features import FEATURES, INDEX, features_compute
from recommendations.retrieval.behaviour_build import behaviour_model_build
from recommendations.retrieval.candidates import SOURCES, Candidate, candidates_gather
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.history import forked_shares, interactions_snapshot, one_blas_thread
from recommendations.retrieval.person import PersonState, person_state
from users.models import BEHAVIOUR_KINDS, Activity

logger = logging.getLogger(__name__)

# One interaction of past and one to predict: on sparse purchase data (a handful of purchases a
# person) a floor of five left nine people in ten out of the training.
MIN_INTERACTIONS = 2
# P2's rule for which items may be made cold: enough interactions that hiding them is a real loss.
COLD_MIN_EVENTS = 5
# The sources that may propose cold items to a cold group. The popular source ranks by the
# stored statistics of now, which would name the cold items' later popularity (P2's cold items
# have none): it proposes nothing there.
COLD_SOURCES = ("behaviour", "semantic", "fresh")


@dataclass
class TrainingData:
    """Groups of candidate rows: one group is one ranking asked of the ranker (a person's warm
    candidates, or the cold items alone for them); several groups may belong to one person."""

    matrix: np.ndarray
    labels: np.ndarray
    groups: list[int]  # rows per group, in order
    relevant: list[int]  # each group's number of label items
    cutoffs: list[datetime]  # each group's person's cut-off
    owners: list[int] = field(default_factory=list)  # each group's person (their position in time order)
    cold: list[bool] = field(default_factory=list)  # the group ranks the cold items only
    window: tuple[datetime | None, datetime | None] = (None, None)
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def labelled_groups(self) -> list[int]:
        """Groups with at least one chosen candidate (the others teach a ranking nothing)."""
        starts = np.concatenate([[0], np.cumsum(self.groups)[:-1]]).astype(int)
        positives = np.add.reduceat(self.labels, starts) if self.groups else np.zeros(0)
        return [
            group for group, (size, count) in enumerate(zip(self.groups, positives, strict=True)) if size and count > 0
        ]

    def select(self, groups: list[int]) -> TrainingData:
        starts = np.concatenate([[0], np.cumsum(self.groups)]).astype(int)
        rows = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in groups]) if groups else np.array([], int)
        return TrainingData(
            matrix=self.matrix[rows],
            labels=self.labels[rows],
            groups=[self.groups[g] for g in groups],
            relevant=[self.relevant[g] for g in groups],
            cutoffs=[self.cutoffs[g] for g in groups],
            owners=[self.owners[g] for g in groups],
            cold=[self.cold[g] for g in groups],
        )

    def of_kind(self, *, cold: bool) -> TrainingData:
        return self.select([group for group, is_cold in enumerate(self.cold) if is_cold == cold])


@dataclass(frozen=True)
class _Learner:
    """One person the ranker learns from: their past before the cut-off, and what came after."""

    user_id: int
    cutoff: datetime
    past: set[int]
    labels: set[int]  # items first chosen after the cut-off


@dataclass(frozen=True)
class _Past:
    """Every interaction before its person's cut-off, cold items left out: what the behaviour
    model of the past learns."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    times: np.ndarray


def cold_items_choose(events_per_item: Counter[int], *, share: float, seed: int) -> frozenset[int]:
    """P2's rule on item ids: a seeded `share` of the items with COLD_MIN_EVENTS or more
    interactions (numpy default_rng(seed).choice over the sorted ids)."""
    eligible = sorted(item_id for item_id, count in events_per_item.items() if count >= COLD_MIN_EVENTS)
    n_cold = round(len(eligible) * share)
    if n_cold == 0:
        return frozenset()
    chosen = np.random.default_rng(seed).choice(np.array(eligible, dtype=np.int64), size=n_cold, replace=False)
    return frozenset(int(item_id) for item_id in chosen)


def _people_split(
    *, label_fraction: float, cold_share: float, seed: int
) -> tuple[list[_Learner], _Past, frozenset[int]]:
    """Each person's interactions sorted by (time, item): the last label_fraction are labels, the
    rest their past (people with fewer than MIN_INTERACTIONS: all past, no labels); the items made
    cold, whose interactions the past leaves out."""
    per_person: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    rows = Activity.objects.filter(item__isnull=False, kind__in=BEHAVIOUR_KINDS).values_list(
        "user_id", "item_id", "created_at"
    )
    events_per_item: Counter[int] = Counter()
    for user_id, item_id, created_at in rows.order_by().iterator(chunk_size=20_000):
        per_person[user_id].append((created_at, item_id))
        events_per_item[item_id] += 1
    cold = cold_items_choose(events_per_item, share=cold_share, seed=seed)
    past_users, past_items, past_times = [], [], []
    people: list[_Learner] = []
    for user_id, events in per_person.items():
        events.sort()
        n_labels = max(1, math.ceil(len(events) * label_fraction))
        head = events if len(events) < MIN_INTERACTIONS else events[: len(events) - n_labels]
        for created_at, item_id in head:
            if item_id not in cold:
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
    return people, past_of_everyone, cold


def _people_sample(people: list[_Learner], *, max_people: int, seed: int) -> list[_Learner]:
    """Everyone (max_people 0) or a seeded sample, ordered by cut-off (the temporal split takes
    the latest to validate)."""
    people = sorted(people, key=lambda person: person.user_id)
    if max_people and len(people) > max_people:
        random.Random(seed).shuffle(people)
        people = people[:max_people]
    return sorted(people, key=lambda person: (person.cutoff, person.user_id))


@dataclass
class _Rows:
    """The groups as they are built, person by person."""

    matrices: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    relevant: list[int] = field(default_factory=list)
    cutoffs: list[datetime] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)
    cold: list[bool] = field(default_factory=list)

    def extend(self, other: _Rows) -> None:
        """Append another share's groups after these (a forked process's, in people order)."""
        for column in fields(self):
            getattr(self, column.name).extend(getattr(other, column.name))

    def add(
        self, candidates: dict[int, Candidate], *, labels: set[int], person: _Learner, owner: int, cold: bool
    ) -> None:
        if not candidates:
            return
        ids = sorted(candidates)
        self.matrices.append(np.stack([candidates[item_id].feature_row() for item_id in ids]))
        self.labels.append(np.array([1.0 if item_id in labels else 0.0 for item_id in ids]))
        self.groups.append(len(ids))
        self.relevant.append(len(labels))
        self.cutoffs.append(person.cutoff)
        self.owners.append(owner)
        self.cold.append(cold)

    def data(self) -> TrainingData:
        return TrainingData(
            matrix=np.concatenate(self.matrices) if self.matrices else np.zeros((0, len(FEATURES))),
            labels=np.concatenate(self.labels) if self.labels else np.zeros(0),
            groups=self.groups,
            relevant=self.relevant,
            cutoffs=self.cutoffs,
            owners=self.owners,
            cold=self.cold,
            window=(min(self.cutoffs) if self.cutoffs else None, max(self.cutoffs) if self.cutoffs else None),
        )


def _described(
    state: PersonState, *, filters: ItemFilters, behaviour_model_id: int, cold: frozenset[int], sources: tuple[str, ...]
) -> dict[int, Candidate]:
    config = recommender_settings()
    model_name, size = config.serving_model, config.candidates_per_source
    candidates = candidates_gather(
        state=state,
        filters=filters,
        size=size,
        model_name=model_name,
        behaviour_model_id=behaviour_model_id,
        sources=sources,
    )
    features_compute(state=state, candidates=candidates, model_name=model_name, size=size, hidden_items=cold)
    return candidates


def _people_rows(
    people: Iterable[_Learner], *, first_owner: int, behaviour_model_id: int, cold: frozenset[int]
) -> _Rows:
    """The serving code's candidates and features of each person as of their cut-off: their warm
    group, and the cold items alone when they went on to choose one of them. `first_owner`: the
    first person's position among everyone read (a process's share starts part-way)."""
    model_name = recommender_settings().serving_model
    rows = _Rows()
    with one_blas_thread():
        for owner, person in enumerate(people, start=first_owner):
            state = person_state(user_id=person.user_id, model_name=model_name, as_of=person.cutoff)
            filters = ItemFilters(exclude_ids=frozenset(state.seen | person.past))
            candidates = _described(
                state, filters=filters, behaviour_model_id=behaviour_model_id, cold=cold, sources=SOURCES
            )
            rows.add(candidates, labels=person.labels, person=person, owner=owner, cold=False)
            cold_labels = person.labels & cold
            if cold_labels:
                candidates = _described(
                    state,
                    filters=ItemFilters(exclude_ids=filters.exclude_ids, only_ids=cold),
                    behaviour_model_id=behaviour_model_id,
                    cold=cold,
                    sources=COLD_SOURCES,
                )
                rows.add(candidates, labels=cold_labels, person=person, owner=owner, cold=True)
    return rows


def _training_rows(
    people: list[_Learner],
    *,
    processes: int,
    behaviour_model_id: int,
    cold: frozenset[int],
    progress: Callable[[Iterable, str], Iterable],
) -> TrainingData:
    """_people_rows of everyone, in this process or over `processes` forked children, each a
    contiguous share of the people (history.forked_shares: the groups come back in the same
    order as from one process)."""
    started = time.monotonic()
    parts = forked_shares(
        lambda share, start: _people_rows(share, first_owner=start, behaviour_model_id=behaviour_model_id, cold=cold),
        people,
        processes=processes,
        what="ranker training data",
    )
    if parts is None:
        described = progress(people, "ranker training data")
        return _people_rows(described, first_owner=0, behaviour_model_id=behaviour_model_id, cold=cold).data()
    logger.info(
        "ranker training data built people=%d processes=%d ms=%d",
        len(people),
        processes,
        (time.monotonic() - started) * 1000,
    )
    rows = _Rows()
    for part in parts:
        rows.extend(part)
    return rows.data()


def training_data_build(
    *,
    label_fraction: float,
    max_people: int,
    cold_share: float | None = None,
    seed: int = 0,
    processes: int | None = None,
    progress: Callable[[Iterable, str], Iterable] = lambda rows, description: rows,
) -> TrainingData:
    """Candidates and features of each person as of their cut-off, labelled by what they went on
    to choose. See the module docstring."""
    started = time.monotonic()
    cold_share = recommender_settings().ranker_cold_share if cold_share is None else cold_share
    if not 0.0 <= cold_share < 1.0:
        raise RankerError(f"the share of items made cold must be at least 0 and below 1, not {cold_share}")
    people, past, cold = _people_split(label_fraction=label_fraction, cold_share=cold_share, seed=seed)
    if not people:
        raise RankerError(f"no person has {MIN_INTERACTIONS} or more interactions yet: nothing to learn from")
    labelled = len(people)
    people = _people_sample(people, max_people=max_people, seed=seed)
    shadow = behaviour_model_build(user_ids=past.user_ids, item_ids=past.item_ids, times=past.times, activate=False)
    seconds = {"behaviour_model_of_the_past": round(time.monotonic() - started, 1)}
    try:
        # Every person is read as of their own cut-off: popularity and evidence from one copy of
        # the interactions in memory rather than two aggregates over the database per person.
        with interactions_snapshot():
            data = _training_rows(
                people,
                processes=recommender_settings().ranker_processes if processes is None else processes,
                behaviour_model_id=shadow.id,
                cold=cold,
                progress=progress,
            )
    finally:
        BehaviourModel.objects.filter(pk=shadow.pk).delete()
    seconds["features"] = round(time.monotonic() - started - seconds["behaviour_model_of_the_past"], 1)
    seconds["features_per_person_ms"] = round(1000 * seconds["features"] / max(1, len(people)), 1)
    data.seconds = seconds
    data.counts = {"labelled_people": labelled, "people_read": len(people), "cold_items": len(cold)}
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
    """The earlier people train, the latest validate (all groups of a person go one way);
    training keeps only groups with a label."""
    n_people = len(set(data.owners))
    n_validation = max(1, round(n_people * validation_share))
    if n_people - n_validation < 1:
        raise RankerError(f"{n_people} people to learn from: too few to train and validate")
    # Owners are positions in cut-off order: the latest n_validation people validate.
    first_validating = sorted(set(data.owners))[n_people - n_validation]
    training = data.select([group for group, owner in enumerate(data.owners) if owner < first_validating])
    validation = data.select([group for group, owner in enumerate(data.owners) if owner >= first_validating])
    if training.labels.sum() == 0:
        raise RankerError("no candidate of the training people was chosen later: nothing to learn from")
    # Groups whose candidates hold no label teach a ranking nothing (every order scores 0).
    return training.select(training.labelled_groups()), validation


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
    trained: list[tuple[Ranker, dict[str, float | None], float]], *, data: TrainingData, k: int, shared_metrics: dict
) -> list[RankerModel]:
    """Each (ranker, validation NDCGs, seconds) as a new RankerModel version, in one transaction."""
    versions = []
    with transaction.atomic():
        latest = RankerModel.objects.aggregate(latest=Max("version"))["latest"] or 0
        for offset, (ranker, validation_ndcg, train_seconds) in enumerate(trained, start=1):
            metrics = {
                f"ndcg@{k}": validation_ndcg["all"],
                f"warm_ndcg@{k}": validation_ndcg["warm"],
                f"cold_ndcg@{k}": validation_ndcg["cold"],
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
    versions: list[RankerModel],
    *,
    k: int,
    best_source: float,
    active_ndcg: float | None,
    activate: bool,
    data_note: str,
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
    for version in versions:
        version.notes = " ".join(part for part in (version.notes, data_note) if part)
        version.save(update_fields=["notes"])


class _Validation:
    """NDCG@k on the validation groups: all of them (what activation compares), warm and cold apart."""

    def __init__(self, validation: TrainingData, *, k: int) -> None:
        self.data, self.k = validation, k
        self.cold = np.repeat(np.array(validation.cold, dtype=bool), validation.groups)

    def _ndcg(self, scores: np.ndarray, *, cold: bool | None) -> float | None:
        data = self.data
        if cold is None:
            return round(ndcg_of_groups(scores, data.labels, data.groups, k=self.k, relevant=data.relevant), 4)
        part = data.of_kind(cold=cold)
        if not part.groups:
            return None
        rows = self.cold == cold
        return round(ndcg_of_groups(scores[rows], part.labels, part.groups, k=self.k, relevant=part.relevant), 4)

    def all(self, scores: np.ndarray) -> float:
        return cast(float, self._ndcg(scores, cold=None))

    def parts(self, scores: np.ndarray) -> dict[str, float | None]:
        return {"all": self.all(scores), "warm": self._ndcg(scores, cold=False), "cold": self._ndcg(scores, cold=True)}


def ranker_train(
    *,
    label_fraction: float | None = None,
    validation_share: float | None = None,
    max_people: int | None = None,
    cold_share: float | None = None,
    algorithms: tuple[str, ...] = (RankerAlgorithm.LAMBDARANK, RankerAlgorithm.LOGISTIC_REGRESSION),
    activate: bool = True,
    seed: int = 0,
    data_note: str = "",
    processes: int | None = None,
    progress: Callable[[Iterable, str], Iterable] = lambda rows, description: rows,
) -> list[RankerModel]:
    """Train new ranker versions; activate the best if it earns it. Returns the new versions.
    data_note is added to every new version's notes (e.g. that the history is simulated)."""
    config = recommender_settings()
    k = config.ranker_validation_k
    data = training_data_build(
        label_fraction=label_fraction or config.ranker_label_fraction,
        max_people=config.ranker_max_people if max_people is None else max_people,
        cold_share=cold_share,
        seed=seed,
        processes=processes,
        progress=progress,
    )
    training, validation = _temporal_split(data, validation_share=validation_share or config.ranker_validation_share)
    scored = _Validation(validation, k=k)
    baselines = {name: scored.parts(scores) for name, scores in _single_source_scores(validation.matrix).items()}
    best_source = max(baselines[name]["all"] or 0.0 for name in ("behaviour", "semantic", "popular"))
    active_version, active_ndcg = _active_ndcg(scored.all, validation)
    started = time.monotonic()
    # Validated on the latest people, then refit on everyone (validation people included) with the
    # same settings: the stored model learns from the newest interactions too, and the figure
    # that decides activation is the held-out one.
    everyone = data.select(data.labelled_groups())
    trained = []
    for algorithm in algorithms:
        step = time.monotonic()
        validated = _fit(algorithm, training)
        validation_ndcg = scored.parts(validated.score(validation.matrix))
        trained.append((_fit(algorithm, everyone), validation_ndcg, round(time.monotonic() - step, 1)))
    shared_metrics = {
        "single_sources": {name: baselines[name]["all"] for name in ("behaviour", "semantic", "popular")},
        "blend": baselines["blend"]["all"],
        "single_sources_warm": {name: baselines[name]["warm"] for name in ("behaviour", "semantic", "popular")},
        "single_sources_cold": {name: baselines[name]["cold"] for name in ("behaviour", "semantic", "popular")},
        "active_version": active_version.version if active_version else None,
        "active_ndcg": active_ndcg,
        **data.counts,
        "training_people": len(set(training.owners)),
        "refit_people": len(set(everyone.owners)),
        "validation_people": len(set(validation.owners)),
        "training_groups": len(training.groups),
        "training_cold_groups": int(sum(training.cold)),
        "validation_groups": len(validation.groups),
        "validation_cold_groups": int(sum(validation.cold)),
        "training_rows": int(len(training.labels)),
        "training_positives": int(training.labels.sum()),
    }
    versions = _versions_store(trained, data=data, k=k, shared_metrics=shared_metrics)
    logger.info(
        "rankers trained versions=%s people=%d groups=%d seconds=%.1f",
        [version.version for version in versions],
        len(set(data.owners)),
        len(data.groups),
        time.monotonic() - started,
    )
    _best_activate(
        versions, k=k, best_source=best_source, active_ndcg=active_ndcg, activate=activate, data_note=data_note
    )
    return versions
