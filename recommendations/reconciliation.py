"""What a client was told against what the database holds, after faults (tests/faults, `soak`).

A client that keeps, for every write it was answered 201 for, the text it sent (each one
unique) can ask: is every acknowledged write there exactly once, embedded, and are the people's
interest vectors and kept lists built from it? The questions are SQL over the run's own
cluster (core.fault_stack.PostgresCluster.query), since the run's processes, not this one,
are connected to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from recommendations.models import PrecomputedList, UserInterest
from users.models import Activity, User

Query = Callable[[str, list], list[tuple]]

ACTIVITIES = Activity._meta.db_table
PEOPLE = User._meta.db_table
INTERESTS = UserInterest._meta.db_table
LISTS = PrecomputedList._meta.db_table


@dataclass
class Findings:
    acknowledged: int = 0
    found: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    not_embedded: int = 0
    stale_people: list[int] = field(default_factory=list)
    lists_behind: list[int] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        """Every acknowledged text embedded, every interest and kept list rebuilt from it."""
        return not self.not_embedded and not self.stale_people and not self.lists_behind

    @property
    def intact(self) -> bool:
        return not self.lost and not self.duplicated

    def summary(self) -> str:
        return (
            f"acknowledged {self.acknowledged}, rows found {self.found}, lost {len(self.lost)}, "
            f"duplicated {len(self.duplicated)}, not embedded {self.not_embedded}, "
            f"stale interests {len(self.stale_people)}, lists behind {len(self.lists_behind)}"
        )


def reconcile(query: Query, *, acknowledged_texts: Iterable[str], user_ids: Iterable[int]) -> Findings:
    texts = sorted(set(acknowledged_texts))
    people = sorted(set(user_ids))
    findings = Findings(acknowledged=len(texts))
    counts = dict(
        query(
            f"SELECT text, count(*) FROM {ACTIVITIES} WHERE text = ANY(%s) GROUP BY text",  # noqa: S608 - table names from the models
            [texts],
        )
    )
    findings.found = sum(counts.values())
    findings.lost = [text for text in texts if text not in counts]
    findings.duplicated = [text for text, count in counts.items() if count > 1]
    findings.not_embedded = query(
        f"SELECT count(*) FROM {ACTIVITIES} WHERE text = ANY(%s) AND embedding_status <> 'ok'",  # noqa: S608 - table names from the models
        [texts],
    )[0][0]
    # A person's interest is stale when marked so (a task could not be queued) or older than
    # their newest activity with a text (the task after it never ran).
    findings.stale_people = [
        row[0]
        for row in query(
            f"SELECT p.id FROM {PEOPLE} p WHERE p.id = ANY(%s) AND (p.interest_stale OR EXISTS ("  # noqa: S608 - table names from the models
            f"  SELECT 1 FROM {ACTIVITIES} a WHERE a.user_id = p.id AND a.text <> '' AND a.created_at > "
            f"  coalesce((SELECT max(i.updated_at) FROM {INTERESTS} i WHERE i.user_id = p.id), '-infinity')))",
            [people],
        )
    ]
    findings.lists_behind = [
        row[0]
        for row in query(
            f"SELECT l.user_id FROM {LISTS} l WHERE l.user_id = ANY(%s) AND l.last_activity_id < "  # noqa: S608 - table names from the models
            f"(SELECT max(a.id) FROM {ACTIVITIES} a WHERE a.user_id = l.user_id)",
            [people],
        )
    ]
    return findings
