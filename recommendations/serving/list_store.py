"""Precomputed lists: a person's ranked recommendations kept between requests.

A request that computes everything live reads the person, runs four candidate sources, builds
the features of a few hundred candidates and ranks them: about 180 ms at 100,000 items here
(BENCHMARKS.md). Most of that does not change between two requests of the same person, so the
ranked list is kept (PrecomputedList) and a request only applies the rules of the moment: the
caller's filters, items deactivated or banned since, staff pins, the per-category cap, the page.

A kept list is used only while it is what a live computation would give:
- its signature still matches: the person's number of activities and newest activity id (any
  new or deleted activity, through any path, changes one of them), the active ranker (staff
  who activate a version expect it to answer) and the recommender's settings (a deployment
  that changes them);
- it is younger than RECOMMENDER_PRECOMPUTED_MAX_AGE: new items, popularity that moved, and
  the hourly behaviour model rebuild. The rebuild is deliberately not in the signature: it
  would make every list stale at once, and every person's next request would pay for a live
  computation in the same minute; through the age, lists renew over the next MAX_AGE.
Otherwise the request computes it again (and keeps it). The worker recomputes the lists it
keeps after each of the person's activities, once their interest vector is rebuilt, so the
next request finds it ready. A request that comes first, right after the activity, does not
compute what the worker is computing: for PRECOMPUTED_CATCH_UP seconds it answers from the kept
list less the items the new activities touched (list_catching_up), and says so in its notes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import JSONField
from django.utils import timezone
from psycopg.types.json import Jsonb

from catalog.models import Item
from core.conf import recommender_settings
from core.replicas import read_connection
from recommendations.models import PrecomputedList, RankerModel
from recommendations.retrieval.candidates import Candidate
from recommendations.retrieval.filters import ItemFilters, id_among
from users.models import Activity


@dataclass(frozen=True)
class ListSignature:
    """What a list was computed from; a list whose signature differs from now's is stale."""

    activity_count: int
    last_activity_id: int
    ranker_id: int | None
    settings_digest: str


def settings_digest() -> str:
    """A short digest of every recommender setting: lists computed under other settings are stale."""
    encoded = json.dumps(recommender_settings().as_dict(), sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def list_signature(*, user_id: int) -> ListSignature:
    """The person's activities and the active ranker (one query), and the settings."""
    statement = (
        f"SELECT count(*), coalesce(max(id), 0), "  # noqa: S608 - table names from the models
        f"(SELECT id FROM {RankerModel._meta.db_table} WHERE is_active) "
        f"FROM {Activity._meta.db_table} WHERE user_id = %s"
    )
    with read_connection().cursor() as cursor:
        cursor.execute(statement, [user_id])
        activity_count, last_activity_id, ranker_id = cursor.fetchone()
    return ListSignature(
        activity_count=activity_count,
        last_activity_id=last_activity_id,
        ranker_id=ranker_id,
        settings_digest=settings_digest(),
    )


def list_row(*, user_id: int, model_name: str) -> PrecomputedList | None:
    return PrecomputedList.objects.filter(user_id=user_id, model_name=model_name).first()


def list_row_and_signature(*, user_id: int, model_name: str) -> tuple[PrecomputedList | None, ListSignature]:
    """The kept list with the signature it must have now: list_signature's figures read in the
    list's own statement (one round trip where a request answered from its list made two, and
    both from one snapshot). Without a kept list, the signature alone (a second query, on the
    path that computes the list)."""
    statement = (
        "SELECT kept.*, now.activity_count AS signature_activity_count, "  # noqa: S608 - table names from the models
        "now.last_activity_id AS signature_last_activity_id, now.ranker_id AS signature_ranker_id "
        f"FROM {PrecomputedList._meta.db_table} AS kept, "
        "(SELECT count(*) AS activity_count, coalesce(max(id), 0) AS last_activity_id, "
        f"(SELECT id FROM {RankerModel._meta.db_table} WHERE is_active) AS ranker_id "
        f"FROM {Activity._meta.db_table} WHERE user_id = %s) AS now "
        "WHERE kept.user_id = %s AND kept.model_name = %s"
    )
    # (user, model_name) is unique: one row or none.
    row = next(iter(PrecomputedList.objects.raw(statement, [user_id, user_id, model_name])), None)
    if row is None:
        return None, list_signature(user_id=user_id)
    signature = ListSignature(
        activity_count=row.signature_activity_count,  # type: ignore[attr-defined]  # the statement's extra column
        last_activity_id=row.signature_last_activity_id,  # type: ignore[attr-defined]  # likewise
        ranker_id=row.signature_ranker_id,  # type: ignore[attr-defined]  # likewise
        settings_digest=settings_digest(),
    )
    return row, signature


def list_current(row: PrecomputedList | None, signature: ListSignature) -> bool:
    """Whether the kept list is still what a live computation would give."""
    if row is None:
        return False
    kept = ListSignature(
        activity_count=row.activity_count,
        last_activity_id=row.last_activity_id,
        ranker_id=row.ranker_id,
        settings_digest=row.settings_digest,
    )
    max_age = timedelta(seconds=recommender_settings().precomputed_max_age)
    return kept == signature and row.computed_at >= timezone.now() - max_age


def list_read(*, user_id: int, model_name: str, signature: ListSignature) -> PrecomputedList | None:
    """The person's kept list, if it is still what a live computation would give."""
    row = list_row(user_id=user_id, model_name=model_name)
    return row if list_current(row, signature) else None


def list_catching_up(row: PrecomputedList | None, signature: ListSignature) -> frozenset[int] | None:
    """While the worker computes the successor of a list the person's newest activities made
    stale: the items those activities touched (to leave out of it), or None when the list must
    be computed now.

    Only new activities may stand between the list and now (nothing deleted, the same ranker
    and settings, younger than MAX_AGE), and the first of them at most PRECOMPUTED_CATCH_UP
    seconds ago: the activity queued the worker's recomputation (or marked the person for the
    sweep), which normally lands within a second; past that, the request does not wait for it.
    """
    config = recommender_settings()
    if row is None or not config.precomputed_catch_up:
        return None
    max_age = timedelta(seconds=config.precomputed_max_age)
    if (
        signature.last_activity_id <= row.last_activity_id
        or (signature.ranker_id, signature.settings_digest) != (row.ranker_id, row.settings_digest)
        or row.computed_at < timezone.now() - max_age
    ):
        return None
    kinds = list(config.exclude_seen_kinds) if config.exclude_seen else []
    statement = (
        f"SELECT count(*), min(created_at), "  # noqa: S608 - the table name from the model
        f"coalesce(array_agg(DISTINCT item_id) FILTER (WHERE item_id IS NOT NULL AND kind = ANY(%s)), '{{}}') "
        f"FROM {Activity._meta.db_table} WHERE user_id = %s AND id > %s"
    )
    with read_connection().cursor() as cursor:
        cursor.execute(statement, [kinds, row.user_id, row.last_activity_id])
        new, first_at, touched = cursor.fetchone()
    caught_up_by = timezone.now() - timedelta(seconds=config.precomputed_catch_up)
    if row.activity_count + new != signature.activity_count or first_at is None or first_at < caught_up_by:
        return None
    return frozenset(touched)


def list_store(
    *,
    user_id: int,
    model_name: str,
    signature: ListSignature,
    computed_at: datetime,
    ordered: list[Candidate],
    reasons: dict[int, str],
    ranker: str,
    fallback: bool,
    notes: list[str],
    complete: bool,
) -> PrecomputedList:
    """Keep the list, unless a computation that started later already kept its own (a request
    racing the worker must not put back a list made from the old interest vector)."""
    row = PrecomputedList(
        user_id=user_id,
        model_name=model_name,
        computed_at=computed_at,
        activity_count=signature.activity_count,
        last_activity_id=signature.last_activity_id,
        ranker_id=signature.ranker_id,
        settings_digest=signature.settings_digest,
        item_ids=[candidate.item_id for candidate in ordered],
        scores=[float(candidate.score) for candidate in ordered],
        sources=[sorted(candidate.sources, key=candidate.sources.__getitem__) for candidate in ordered],
        reasons=[reasons[candidate.item_id] for candidate in ordered],
        ranker=ranker,
        fallback=fallback,
        notes=notes,
        complete=complete,
    )
    fields = [field for field in PrecomputedList._meta.concrete_fields if not field.primary_key]
    columns = [field.column for field in fields]
    values: list[Any] = [
        Jsonb(getattr(row, field.attname)) if isinstance(field, JSONField) else getattr(row, field.attname)
        for field in fields
    ]
    table = PrecomputedList._meta.db_table
    conflict = ("user_id", "model_name")
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in columns if column not in conflict)
    statement = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "  # noqa: S608
        f"ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {updates} "
        f"WHERE {table}.computed_at <= EXCLUDED.computed_at"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, values)
    return row


def list_candidates(row: PrecomputedList, filters: ItemFilters) -> tuple[list[Candidate], dict[int, str]]:
    """The kept list as candidates, best first, without the items the filters (and deactivation
    or a ban since it was computed) now leave out; and the categories of those that remain.

    The list's ids through the primary key (id_among), in no order (the list has its own): as
    `id IN (SELECT unnest(...))` sorted by the items' title, this statement read the whole
    catalog at 10,000 items and was the costliest of the path."""
    allowed = dict(Item.objects.filter(filters.q(), id_among(row.item_ids)).order_by().values_list("id", "category"))
    candidates = []
    for item_id, score, sources in zip(row.item_ids, row.scores, row.sources, strict=True):
        if item_id in allowed:
            candidate = Candidate(item_id, sources={source: rank for rank, source in enumerate(sources)})
            candidate.score = score
            candidates.append(candidate)
    return candidates, allowed
