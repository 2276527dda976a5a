"""A simulated shopping and viewing history for the demo catalog: generated, seeded, and labelled
as simulated wherever it is shown (`load_demo --simulated-people N`, used by `make demo`).

Why: the demo's 40 hand-written people are too few for the re-ranker's activation rule to say
anything (its validation would be the latest 10 people), so `make demo` served the documented
blend on every page. The simulated people give the trained ranker something real to learn and
to be validated on, by the unchanged rule: it must beat every single source on the latest people.

Nothing here is anyone's behaviour. Every simulated person's id starts with SIMULATED_PREFIX and
their display name says "simulated"; the ranker trained on them says so in its notes.

The model of a person (each draw from one numpy generator seeded with `seed`, in a fixed order,
so the same seed gives the same history):
- one or two favourite categories among the shop and video items (help articles are read, not
  chosen), and a fixed appeal per item (log-normal: a few items are much more popular);
- a sequence of distinct items a few days apart: after an item, they often go on to one of its
  companions (the items of its category that share most of its tags: what goes with it), else to
  another item of their categories by appeal, now and then to anything popular;
- one event per item: a view, a click or (less often) a purchase.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import numpy as np

from bundles.reading import BundleSource, UserRow
from catalog.item_fields import ItemRow
from core.records import Rejection
from users.events import EventRow

SIMULATED_PREFIX = "simulated-"
# The demo's own history ends on 2026-11-30; the simulated one spans the same months.
HISTORY_START = datetime(2026, 8, 1, tzinfo=UTC)
HISTORY_DAYS = 120
HISTORY_END = HISTORY_START + timedelta(days=HISTORY_DAYS)
COMPANIONS = 3
# Where a person goes after an item: one of its companions, their own categories, anything popular.
NEXT_COMPANION, NEXT_OWN_CATEGORY = 0.5, 0.35
KINDS, KIND_SHARES = ("view", "click", "purchase"), (0.5, 0.3, 0.2)


def _choosable(items: Iterable[ItemRow | Rejection]) -> list[ItemRow]:
    """Shop and video items (help articles answer questions; nobody buys them)."""
    return sorted(
        (row for row in items if isinstance(row, ItemRow) and not row.external_id.startswith("help-")),
        key=lambda row: row.external_id,
    )


def _companions(rows: list[ItemRow]) -> list[list[int]]:
    """Per item, the COMPANIONS items of its category sharing most of its tags (ties by id)."""
    companions = []
    for index, row in enumerate(rows):
        tags = set(row.tags)
        others = [other for other in range(len(rows)) if other != index and rows[other].category == row.category]
        others.sort(key=lambda other: (-len(tags & set(rows[other].tags)), rows[other].external_id))
        companions.append(others[:COMPANIONS])
    return companions


def _weighted(rng: np.random.Generator, pool: list[int], appeal: np.ndarray, seen: set[int]) -> int | None:
    left = [index for index in pool if index not in seen]
    if not left:
        return None
    weights = appeal[left] / appeal[left].sum()
    return int(left[int(rng.choice(len(left), p=weights))])


def simulated_history(
    items: Iterable[ItemRow | Rejection], *, people: int, seed: int = 0
) -> tuple[list[UserRow], list[EventRow]]:
    """`people` simulated people and their events over the demo catalog's items."""
    rows = _choosable(items)
    if people <= 0 or not rows:
        return [], []
    rng = np.random.default_rng(seed)
    appeal = rng.lognormal(0.0, 0.8, len(rows))
    companions = _companions(rows)
    categories = sorted({row.category for row in rows})
    by_category = {category: [i for i, row in enumerate(rows) if row.category == category] for category in categories}
    everything = list(range(len(rows)))
    users: list[UserRow] = []
    events: list[EventRow] = []
    for number in range(1, people + 1):
        user_id = f"{SIMULATED_PREFIX}{number:04d}"
        users.append(UserRow(line=number, user_id=user_id, display_name=f"Simulated shopper {number:04d} (simulated)"))
        favourites = list(rng.choice(categories, size=int(rng.integers(1, 3)), replace=False))
        own = [index for category in favourites for index in by_category[category]]
        length = int(4 + rng.poisson(4))
        moment = HISTORY_START + timedelta(days=float(rng.uniform(0, HISTORY_DAYS / 3)))
        seen: set[int] = set()
        current = _weighted(rng, own, appeal, seen)
        while current is not None and len(seen) < length:
            seen.add(current)
            kind = KINDS[int(rng.choice(len(KINDS), p=KIND_SHARES))]
            events.append(
                EventRow(
                    line=len(events) + 1,
                    user_id=user_id,
                    item_id=rows[current].external_id,
                    kind=kind,
                    text=None,
                    rating=None,
                    timestamp=moment,
                    file="simulated events",
                )
            )
            moment += timedelta(days=float(rng.uniform(0.5, 6.0)))
            draw = rng.random()
            if draw < NEXT_COMPANION:
                pool = companions[current]
            elif draw < NEXT_COMPANION + NEXT_OWN_CATEGORY:
                pool = own
            else:
                pool = everything
            current = _weighted(rng, pool, appeal, seen)
            if current is None:
                current = _weighted(rng, own, appeal, seen)
            if moment >= HISTORY_END:
                break
    return users, events


def simulated_source(items: Iterable[ItemRow | Rejection], *, people: int, seed: int = 0) -> BundleSource:
    """The simulated people and events as a bundle source (no items: they are the catalog's)."""
    users, events = simulated_history(items, people=people, seed=seed)
    return BundleSource(
        items_file=None,
        users_file="simulated users",
        events_file="simulated events",
        items=lambda: iter(()),
        users=lambda: iter(users),
        events=lambda: iter(events),
    )
