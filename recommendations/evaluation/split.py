"""The per-person temporal split of protocol P1."""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.exceptions import ApplicationError
from core.records import Rejection
from users.events import EventRow


class EvaluationError(ApplicationError):
    pass


def event_sort_key(row: EventRow) -> tuple:
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
        if row.is_interaction:
            interactions[row.user_id].append(row)
        else:
            texts[row.user_id].append(row)
    if not interactions:
        raise EvaluationError("the bundle has no interaction events to evaluate on")
    train: list[EventRow] = []
    test: dict[str, set[str]] = {}
    cutoffs: dict[str, datetime] = {}
    for user_id, rows in interactions.items():
        rows.sort(key=event_sort_key)
        n_test = test_last if test_last is not None else max(1, math.ceil(len(rows) * test_fraction))
        if len(rows) <= n_test:
            train.extend(rows)  # nothing to learn from: this person is not evaluated
            continue
        head, tail = rows[: len(rows) - n_test], rows[len(rows) - n_test :]
        train.extend(head)
        # Every interaction names an item (grouped only when it does): the check drops nothing.
        test[user_id] = {row.item_id for row in tail if row.item_id is not None}
        cutoffs[user_id] = head[-1].timestamp + timedelta(microseconds=1)
        split_point = event_sort_key(tail[0])
        train.extend(row for row in texts.get(user_id, []) if event_sort_key(row) < split_point)
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
