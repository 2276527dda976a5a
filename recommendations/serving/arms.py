"""Which experiment arm answers a person: the running experiment of a surface and a stable hash.

A person's arm is a pure function of (experiment id, person id): blake2b of both, reduced to
one of BUCKETS buckets, and the arms' shares laid end to end over the buckets in the arms'
order. The same person gets the same arm in every process and request for the whole
experiment (nothing is stored, so nothing can disagree), and two experiments shuffle people
independently. Anonymous visitors take no part: they get what serves outside experiments and
their answers name no arm (a cookie would split one person across devices and sign-ins, and
their answers cannot be tied to later purchases anyway).

The lookup is one small query on the experiment's (surface, end_at) index, joined to its arms
(and to the text model an arm names: its version and floor, what free text needs to answer in
its space); a request outside any experiment pays only that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils import timezone

from core.replicas import read_connection
from recommendations.models import Experiment, ExperimentArm, TextModel

# 10,000 buckets: shares are whole percents, so each percent is 100 buckets.
BUCKETS = 10_000


@dataclass(frozen=True)
class Arm:
    """What serves the people of one arm."""

    experiment_id: int
    arm_id: int
    share: int  # percent
    ranker_id: int | None  # None: the documented blend
    # The text model version free text is answered with (None: the frozen encoder), with what
    # serving needs of its row, read in the same query.
    text_model_id: int | None = None
    text_model_version: int | None = None
    text_model_floor: float | None = None
    text_model_base: str | None = None


def assignment_bucket(*, experiment_id: int, person_id: int) -> int:
    """The person's bucket in this experiment, 0 <= bucket < BUCKETS; the same everywhere, always."""
    key = f"experiment:{experiment_id}:person:{person_id}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def arm_for_bucket(arms: Sequence[Arm], bucket: int) -> Arm:
    """The arm whose run of buckets holds this one (shares in percent, summing to 100)."""
    edge = 0
    for arm in arms:
        edge += arm.share * BUCKETS // 100
        if bucket < edge:
            return arm
    return arms[-1]


def running_arms(*, surface: str) -> list[Arm]:
    """The arms of the experiment running now on this surface, in order (one query); [] when none.

    Written as SQL, not through the ORM: every personal request asks, and building the joined
    query took about 1.3 ms of the web process's CPU per request on machine A (BENCHMARKS.md,
    the precomputed-list path), more than PostgreSQL's work for it."""
    now = timezone.now()
    statement = (
        "SELECT arm.experiment_id, arm.id, arm.share, arm.ranker_id, arm.text_model_id, "  # noqa: S608 - table names from the models
        "text_model.version, text_model.match_floor, text_model.base_model "
        f"FROM {ExperimentArm._meta.db_table} AS arm "
        f"JOIN {Experiment._meta.db_table} AS experiment ON experiment.id = arm.experiment_id "
        f"LEFT JOIN {TextModel._meta.db_table} AS text_model ON text_model.id = arm.text_model_id "
        "WHERE experiment.surface = %s AND experiment.end_at > %s AND experiment.start_at <= %s "
        "AND NOT experiment.simulated "
        "ORDER BY arm.experiment_id, arm.position"
    )
    # Where the request reads (a replica inside replica_read), as the ORM's router sent it.
    with read_connection().cursor() as cursor:
        cursor.execute(statement, [str(surface), now, now])
        rows = cursor.fetchall()
    arms = [
        Arm(
            experiment_id=experiment_id,
            arm_id=arm_id,
            share=share,
            ranker_id=ranker_id,
            text_model_id=text_model_id,
            text_model_version=version,
            text_model_floor=floor,
            text_model_base=base_model,
        )
        for experiment_id, arm_id, share, ranker_id, text_model_id, version, floor, base_model in rows
    ]
    if not arms:
        return []
    # At most one experiment runs per surface (experiments.services refuses overlaps); should
    # two ever be found, the older one serves, the same one in every process.
    first = arms[0].experiment_id
    return [arm for arm in arms if arm.experiment_id == first]


def arm_for_person(*, surface: str, person_id: int | None) -> Arm | None:
    """The arm that answers this person on this surface now; None outside experiments and for
    anonymous visitors."""
    if person_id is None:
        return None
    arms = running_arms(surface=surface)
    if not arms:
        return None
    return arm_for_bucket(arms, assignment_bucket(experiment_id=arms[0].experiment_id, person_id=person_id))
