"""The catalog's interactions held in memory, for reads "as of" many past moments.

An item's popularity, trend and evidence as of a moment (`item_popularity(as_of=...)`, the
features' `item_evidence`) are SQL aggregates over every activity before it. A request asks them
once; the re-ranker's training and an offline replay ask them for every person at that person's
own moment, and there they were a third of the time (measured on the demo with 340 people: 47 s
of 148 in two statements per person, each over the whole trending window of the catalog).

Inside `interactions_snapshot()` those reads come from one copy of the interactions loaded at
the start (numpy arrays sorted by item and time: a binary search per item and moment) with the
same definitions as the SQL: distinct people before the moment, interactions weighted by
0.5^(age / TRENDING_HALF_LIFE_DAYS) over the last six half-lives, over the same sum for the whole
catalog; the first interaction; interactions and texts about the item. Activities written after
the snapshot was taken are not seen: it is for reading the past, not for serving.
"""

from __future__ import annotations

import contextvars
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar, cast

import numpy as np
from django.db import connection, connections
from django.db.models import BooleanField, Case, Q, Value, When

from recommendations.ml.encoder import children_without_encoders
from users.models import BEHAVIOUR_KINDS, Activity

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MICROSECONDS = 1_000_000
# Rows fetched per round trip when loading (about 0.1 s for 20,000 here).
CHUNK = 20_000


@dataclass(frozen=True)
class _Events:
    """Events sorted by (item, time). Each event's key, its item's position x (distinct times +
    1) + the rank of its time, is sorted too: one binary search over the keys finds, for many
    items at once, where each item's events before a moment end."""

    items: np.ndarray  # the distinct item ids, sorted
    starts: np.ndarray  # items[i]'s events are times[starts[i]:starts[i + 1]]
    times: np.ndarray  # microseconds since the epoch, ascending within an item
    distinct_times: np.ndarray  # every distinct time, ascending
    keys: np.ndarray

    @classmethod
    def of(cls, item_ids: np.ndarray, times: np.ndarray) -> _Events:
        order = np.lexsort((times, item_ids))
        item_ids, times = item_ids[order], times[order]
        items, starts, positions = np.unique(item_ids, return_index=True, return_inverse=True)
        distinct_times, ranks = np.unique(times, return_inverse=True)
        return cls(
            items=items,
            starts=np.append(starts, len(item_ids)).astype(np.int64),
            times=times,
            distinct_times=distinct_times,
            keys=positions.astype(np.int64) * (len(distinct_times) + 1) + ranks,
        )

    def spans_before(self, item_ids: np.ndarray, moment: int) -> tuple[np.ndarray, np.ndarray]:
        """Per item, the index of its first event and the index just past its last event
        strictly before `moment` (equal when it has none)."""
        if len(self.items) == 0:
            zeros = np.zeros(len(item_ids), dtype=np.int64)
            return zeros, zeros
        positions = np.minimum(np.searchsorted(self.items, item_ids), len(self.items) - 1)
        found = self.items[positions] == item_ids
        rank = np.searchsorted(self.distinct_times, moment, side="left")  # distinct times before it
        stops = np.searchsorted(self.keys, positions * (len(self.distinct_times) + 1) + rank, side="left")
        starts = self.starts[positions]
        return np.where(found, starts, 0), np.where(found, stops, 0)

    def counts_before(self, item_ids: np.ndarray, moment: int) -> np.ndarray:
        starts, stops = self.spans_before(item_ids, moment)
        return stops - starts


@dataclass(frozen=True)
class _PersonActivities:
    """Every activity sorted by (person, time, id): a person's activities before a moment are
    the start of their run, newest first when read backwards (the SQL's -created_at, -id)."""

    users: np.ndarray  # the distinct person ids, sorted
    starts: np.ndarray  # users[i]'s activities are rows starts[i]:starts[i + 1]
    times: np.ndarray  # microseconds since the epoch
    ids: np.ndarray
    item_ids: np.ndarray  # 0: no item (a search, a chat message)
    kinds: np.ndarray  # str objects
    ratings: np.ndarray  # NaN: none
    with_text: np.ndarray  # bool: the activity has text (only those have an ActivityVector)

    def rows_before(self, user_id: int, moment: int) -> range:
        """The person's rows strictly before `moment`, newest first."""
        position = int(np.searchsorted(self.users, user_id))
        if position == len(self.users) or self.users[position] != user_id:
            return range(0)
        start, stop = int(self.starts[position]), int(self.starts[position + 1])
        stop = start + int(np.searchsorted(self.times[start:stop], moment, side="left"))
        return range(stop - 1, start - 1, -1)


@dataclass(frozen=True)
class InteractionHistory:
    interactions: _Events  # every behaviour interaction (BEHAVIOUR_KINDS, with an item)
    first_choices: _Events  # each (item, person)'s first interaction: distinct people
    texts: _Events  # activities about an item with text (reviews, comments, tags ...)
    all_times: np.ndarray  # every interaction's time, ascending: the catalog's trending sum
    people: _PersonActivities  # every activity, per person: the person as of a moment
    # Item vectors read during the block, per model (None: the item has none). They do not
    # depend on the moment asked; at most the items the block touches are held.
    vectors: dict[str, dict[int, np.ndarray | None]] = field(default_factory=dict)

    def item_vectors(
        self, *, item_ids: Iterable[int], model_name: str, read: Callable[..., dict[int, np.ndarray]]
    ) -> dict[int, np.ndarray]:
        """The items' vectors, those not held yet fetched with `read(item_ids=, model_name=)`."""
        held = self.vectors.setdefault(model_name, {})
        wanted = list(item_ids)
        missing = [item_id for item_id in wanted if item_id not in held]
        if missing:
            found = read(item_ids=missing, model_name=model_name)
            held.update({item_id: found.get(item_id) for item_id in missing})
        return {item_id: vector for item_id in wanted if (vector := held[item_id]) is not None}

    def popularity(
        self, *, item_ids: list[int], as_of: datetime, half_life_seconds: float
    ) -> tuple[float, dict[int, tuple[int, float, float]]]:
        """The catalog's recency-weighted interactions before as_of (the trending share's
        denominator), and item -> (distinct people, its recency-weighted interactions, its first
        interaction in Unix seconds) for the items with one before as_of."""
        moment = _microseconds(as_of)
        half_life = half_life_seconds * MICROSECONDS
        window_start = moment - int(6 * half_life)
        low, high = np.searchsorted(self.all_times, [window_start, moment], side="left")
        total = float(np.sum(np.power(0.5, (moment - self.all_times[low:high]) / half_life)))
        ids = np.asarray(item_ids, dtype=np.int64)
        starts, stops = self.interactions.spans_before(ids, moment)
        _starts, window_starts = self.interactions.spans_before(ids, window_start)
        people = self.first_choices.counts_before(ids, moment)
        # The events of the trending window, every item's run laid end to end, summed per item.
        lengths = np.maximum(stops - window_starts, 0)
        runs = np.repeat(np.cumsum(lengths) - lengths, lengths)
        flat = np.repeat(window_starts, lengths) + np.arange(int(lengths.sum())) - runs
        decays = np.power(0.5, (moment - self.interactions.times[flat]) / half_life)
        trending = np.bincount(np.repeat(np.arange(len(ids)), lengths), weights=decays, minlength=len(ids))
        return total, {
            int(item_id): (
                int(people[row]),
                float(trending[row]),
                int(self.interactions.times[starts[row]]) / MICROSECONDS,
            )
            for row, item_id in enumerate(ids)
            if stops[row] > starts[row]
        }

    def person_item_rows(self, *, user_id: int, as_of: datetime) -> list[tuple[int, str, float | None, datetime]]:
        """The person's activities with an item before as_of, newest first: (item, kind, rating,
        created_at), what person_state reads with SQL."""
        people = self.people
        return [
            (int(people.item_ids[row]), people.kinds[row], _rating(people.ratings[row]), _moment(people.times[row]))
            for row in people.rows_before(user_id, _microseconds(as_of))
            if people.item_ids[row]
        ]

    def person_activities(self, *, user_id: int, as_of: datetime, limit: int) -> list[dict]:
        """The person's newest `limit` activities before as_of, newest first, as the SQL's
        values("id", "kind", "rating", "created_at", "item_id") plus "with_text"."""
        people = self.people
        return [
            {
                "id": int(people.ids[row]),
                "kind": people.kinds[row],
                "rating": _rating(people.ratings[row]),
                "created_at": _moment(people.times[row]),
                "item_id": int(people.item_ids[row]) or None,
                "with_text": bool(people.with_text[row]),
            }
            for row in people.rows_before(user_id, _microseconds(as_of))[:limit]
        ]

    def person_wrote_before(self, *, user_id: int, as_of: datetime) -> bool:
        """Whether the person has an activity with text before as_of (their words' vectors)."""
        people = self.people
        return any(people.with_text[row] for row in people.rows_before(user_id, _microseconds(as_of)))

    def evidence(self, *, item_ids: list[int], as_of: datetime) -> dict[int, tuple[int, int]]:
        """item -> (interactions, activities with text about it) before as_of."""
        moment = _microseconds(as_of)
        ids = np.asarray(item_ids, dtype=np.int64)
        interactions = self.interactions.counts_before(ids, moment)
        texts = self.texts.counts_before(ids, moment)
        return {
            int(item_id): (int(interactions[row]), int(texts[row]))
            for row, item_id in enumerate(ids)
            if interactions[row] or texts[row]
        }


_current: contextvars.ContextVar[InteractionHistory | None] = contextvars.ContextVar(
    "interaction_history", default=None
)


def interaction_history() -> InteractionHistory | None:
    """The snapshot of the enclosing interactions_snapshot() block, if any."""
    return _current.get()


@contextmanager
def interactions_snapshot() -> Iterator[InteractionHistory]:
    """Load the interactions once; as-of reads inside the block come from them."""
    history = interaction_history_load()
    token = _current.set(history)
    try:
        yield history
    finally:
        _current.reset(token)


def interaction_history_load() -> InteractionHistory:
    started = time.monotonic()
    # kind <> dismiss on rows with an item: BEHAVIOUR_KINDS, what ItemStats and the SQL count.
    interactions = _columns(
        Activity.objects.filter(item__isnull=False, kind__in=sorted(BEHAVIOUR_KINDS)).values_list(
            "item_id", "user_id", "created_at"
        )
    )
    texts = _columns(
        Activity.objects.filter(Q(item__isnull=False) & Q(text__isnull=False) & ~Q(text="")).values_list(
            "item_id", "user_id", "created_at"
        )
    )
    item_ids, user_ids, times = interactions
    # Each (item, person)'s first interaction: sorted by time, the first row of each pair.
    order = np.lexsort((times, user_ids, item_ids))
    pairs = np.stack([item_ids[order], user_ids[order]], axis=1)
    first = np.ones(len(order), dtype=bool)
    first[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
    history = InteractionHistory(
        interactions=_Events.of(item_ids, times),
        first_choices=_Events.of(item_ids[order][first], times[order][first]),
        texts=_Events.of(texts[0], texts[2]),
        all_times=np.sort(times),
        people=_person_activities(),
    )
    logger.info(
        "interactions snapshot loaded interactions=%d texts=%d ms=%d",
        len(times),
        len(texts[2]),
        (time.monotonic() - started) * 1000,
    )
    return history


def _person_activities() -> _PersonActivities:
    columns: tuple[list, ...] = ([], [], [], [], [], [], [])
    rows = Activity.objects.annotate(
        with_text=Case(
            When(Q(text__isnull=False) & ~Q(text=""), then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
    ).values_list("user_id", "created_at", "id", "item_id", "kind", "rating", "with_text")
    for row in rows.order_by().iterator(chunk_size=CHUNK):
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    user_ids, created, ids, item_ids, kinds, ratings, with_text = columns
    times = np.array([_microseconds(moment) for moment in created], dtype=np.int64)
    user_array, id_array = np.array(user_ids, dtype=np.int64), np.array(ids, dtype=np.int64)
    order = np.lexsort((id_array, times, user_array))
    users, starts = np.unique(user_array[order], return_index=True)
    return _PersonActivities(
        users=users,
        starts=np.append(starts, len(order)).astype(np.int64),
        times=times[order],
        ids=id_array[order],
        item_ids=np.array([item_id or 0 for item_id in item_ids], dtype=np.int64)[order],
        kinds=np.array(kinds, dtype=object)[order],
        ratings=np.array([np.nan if rating is None else rating for rating in ratings], dtype=np.float64)[order],
        with_text=np.array(with_text, dtype=bool)[order],
    )


def _rating(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _moment(microseconds: np.int64) -> datetime:
    return _EPOCH + timedelta(microseconds=int(microseconds))


def _columns(rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    item_ids, user_ids, times = [], [], []
    for item_id, user_id, created_at in rows.order_by().iterator(chunk_size=CHUNK):
        item_ids.append(item_id)
        user_ids.append(user_id)
        times.append(_microseconds(created_at))
    return (
        np.array(item_ids, dtype=np.int64),
        np.array(user_ids, dtype=np.int64),
        np.array(times, dtype=np.int64),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _microseconds(moment: datetime) -> int:
    """Exact microseconds since the epoch (an aware datetime)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROSECONDS + delta.microseconds


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread inside the block: for loops of many small matrix products (a person's
    candidates against a few vectors), as the re-ranker's training and an offline replay run.
    OpenBLAS's second thread costs more than it saves there, and far more on a busy machine:
    433 x 384 candidate vectors against 2 + 3 + 5 vectors took 35 ms with two threads and 2.5 ms
    with one at load average 10 on the 2-core machine (machine B, 2026-12-07)."""
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    with threadpool_limits(limits=1, user_api="blas"):
        yield


# The work forked_shares' children run: a fork inherits it (a closure over the caller's state),
# where a Pool's pickle could not carry it.
_share_work: Callable[[list, int], object] | None = None


def _share_run(share: tuple[list, int]) -> object:
    assert _share_work is not None
    try:
        return _share_work(*share)
    finally:
        connections.close_all()  # the child's own connection, never the parent's


def forked_shares(work: Callable[[list[T], int], R], items: list[T], *, processes: int, what: str) -> list[R] | None:
    """work(share, start) over `processes` forked children, each a contiguous share of `items`
    (start: the share's position in them), the results in the items' order; None where the
    caller should do the work itself: one process asked, too few items, or a process that cannot
    fork (inside a transaction the children could not see its rows, nor may its connection be
    closed; a daemonic process, a Celery prefork child, may not have children).

    The children inherit the interactions snapshot and start no encoder (children_without_
    encoders: they read stored vectors); the parent's connections are closed first so that no
    child shares their sockets. The re-ranker's training data and the personal protocols' asks."""
    if processes <= 1:
        return None
    if connection.in_atomic_block or multiprocessing.current_process().daemon:
        logger.warning("%s in one process: processes=%d cannot fork here", what, processes)
        return None
    if len(items) < 2 * processes:
        return None
    global _share_work
    bounds = np.linspace(0, len(items), processes + 1).astype(int)
    shares = [(items[low:high], int(low)) for low, high in zip(bounds[:-1], bounds[1:], strict=True)]
    connections.close_all()
    _share_work = work
    try:
        with children_without_encoders(), multiprocessing.get_context("fork").Pool(processes) as pool:
            return cast(list[R], pool.map(_share_run, shares))
    finally:
        _share_work = None
