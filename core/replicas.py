"""Read replicas for the recommender's reads (DATABASE_REPLICA_URLS; issue #15, item 1).

Every query goes to the primary ("default") except inside `replica_read`, which the
recommendation endpoints wrap around their work: there, reads (the router's db_for_read and the
raw SQL that asks `read_connection()`) go to one streaming replica, chosen round robin among
those that answered their last health check. Writes always go to the primary (the router's
db_for_write; the answer log, a kept list), and so does a read inside a transaction on the
primary: a transaction must see its own writes.

Read-your-writes, by position in the WAL rather than by time alone: after a person's write
commits (an activity, a deletion, the worker's rebuild of their interest and kept list)
`replica_mark_written` stores the primary's WAL position in the shared cache for
DATABASE_REPLICA_READ_YOUR_WRITES_SECONDS. While it is there, that person is read from a
replica whose `pg_last_wal_replay_lsn()` has reached it (one small query on the replica), else
from the primary: they see their own new activity at once, and a replica that keeps up still
serves them. After the window they are read from any healthy replica, like everyone else: the
window only has to be longer than the replicas' normal lag (a fraction of a second here). A
cache that cannot be read counts as "just wrote": the primary answers, never a stale replica.

A replica that does not answer (stopped, partitioned) is marked down for
DATABASE_REPLICA_RETRY_SECONDS and skipped; a request whose replica fails in the middle runs
again on the primary. Replicas are never migrated (allow_migrate) and build nothing: their
tables and vector indexes come from the primary through replication.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from core.database_outage import DATABASE_OUTAGES

logger = logging.getLogger(__name__)

T = TypeVar("T")

REPLICA_ALIAS_PREFIX = "replica_"
WRITTEN_KEY = "replicas:written:%s"
# A cache that cannot be read: whether the person just wrote is unknown, so the primary answers.
_UNKNOWN = "unknown"

_reading: contextvars.ContextVar[str | None] = contextvars.ContextVar("replica_reading", default=None)
_round_robin = itertools.count()
_health_lock = threading.Lock()
# alias -> (answered, monotonic time of the check): one verdict per process, shared by its threads.
_health: dict[str, tuple[bool, float]] = {}


def replica_aliases() -> list[str]:
    return list(getattr(settings, "DATABASE_REPLICAS", []))


def read_alias() -> str:
    """The database this read goes to: the replica chosen for the current request, else the primary."""
    alias = _reading.get()
    if alias is None or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    return alias


def read_connection() -> BaseDatabaseWrapper:
    """The connection raw SQL reads through (the ORM's reads go through ReplicaRouter)."""
    return connections[read_alias()]


class ReplicaRouter:
    """DATABASE_ROUTERS: replica reads inside `replica_read`, everything else on the primary."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return read_alias()

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        # A row read from a replica is the primary's row: relations between them are fine.
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS


# --- health ---------------------------------------------------------------------------------


def _probe(alias: str) -> bool:
    """Whether the replica answers a query now; a failed connection is closed for the next try."""
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DATABASE_OUTAGES as error:
        logger.debug("replica %s did not answer (%s)", alias, type(error).__name__)
        connection.close()
        return False


def _health_record(alias: str, answered: bool) -> None:
    with _health_lock:
        before = _health.get(alias)
        _health[alias] = (answered, time.monotonic())
    if before is None or before[0] != answered:
        if answered:
            logger.info("replica %s answers: the recommender's reads use it", alias)
        else:
            # The URL names a password and a host: only the alias is logged.
            logger.warning(
                "replica %s does not answer: skipped for %d s (reads go to the other replicas or the primary)",
                alias,
                settings.DATABASE_REPLICA_RETRY_SECONDS,
            )


def replica_healthy(alias: str) -> bool:
    """The last verdict while it is fresh (DATABASE_REPLICA_RETRY_SECONDS), else a new probe."""
    verdict = _health.get(alias)
    if verdict is not None and time.monotonic() - verdict[1] < settings.DATABASE_REPLICA_RETRY_SECONDS:
        return verdict[0]
    answered = _probe(alias)
    _health_record(alias, answered)
    return answered


def replicas_probe_at_start() -> dict[str, bool]:
    """Each replica probed once as a web process starts (config/gunicorn.conf.py), so a replica
    that does not answer is logged at start-up; the process starts anyway and reads from the
    primary until it answers."""
    verdicts = {}
    for alias in replica_aliases():
        verdicts[alias] = _probe(alias)
        _health_record(alias, verdicts[alias])
        connections[alias].close()  # opened in the starting thread, which serves no request
    return verdicts


def replicas_readiness() -> dict[str, Any]:
    """Readiness: every replica's state and replay position (never critical: the primary can serve)."""
    states = {}
    for alias in replica_aliases():
        answered = _probe(alias)
        _health_record(alias, answered)
        state: dict[str, Any] = {"ok": answered}
        if answered:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")
                in_recovery, replayed = cursor.fetchone()
            state.update(standby=bool(in_recovery), replayed=replayed)
        states[alias] = state
    return {"ok": all(state["ok"] for state in states.values()), "replicas": states}


# --- read-your-writes -----------------------------------------------------------------------


def replica_mark_written(*, user_id: int) -> None:
    """After a write of this person commits: read them from a replica that has replayed it
    (or the primary) for the next DATABASE_REPLICA_READ_YOUR_WRITES_SECONDS. Inside a
    transaction, marks once it commits (the position of the commit, not of the write)."""
    if not replica_aliases():
        return
    transaction.on_commit(lambda: _mark_now(user_id))


def _mark_now(user_id: int) -> None:
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            position = cursor.fetchone()[0]
        cache.set(WRITTEN_KEY % user_id, position, timeout=settings.DATABASE_REPLICA_READ_YOUR_WRITES_SECONDS)
    except Exception as error:  # noqa: BLE001 - the write is committed; reads fall back below
        # Without the mark this person may read a replica behind their write for a moment.
        logger.warning("read-your-writes mark for user=%s not stored (%s)", user_id, type(error).__name__)


def _written_position(user_id: int | None) -> str | None:
    if user_id is None:
        return None
    try:
        return cache.get(WRITTEN_KEY % user_id)
    except Exception as error:  # noqa: BLE001 - a cache outage must not fail the read
        logger.warning("read-your-writes mark unreadable (%s): reading from the primary", type(error).__name__)
        return _UNKNOWN


def _replayed(alias: str, position: str) -> bool:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)", [position])
        return bool(cursor.fetchone()[0])


def replica_choose(*, user_id: int | None) -> str:
    """The alias this request reads from: a healthy replica (round robin) that has replayed the
    person's latest write if they made one within the window, else the primary."""
    aliases = replica_aliases()
    if not aliases:
        return DEFAULT_DB_ALIAS
    written = _written_position(user_id)
    if written == _UNKNOWN:
        return DEFAULT_DB_ALIAS
    start = next(_round_robin)
    for offset in range(len(aliases)):
        alias = aliases[(start + offset) % len(aliases)]
        if not replica_healthy(alias):
            continue
        if written is None:
            return alias
        try:
            if _replayed(alias, written):
                return alias
        except DATABASE_OUTAGES:
            connections[alias].close()
            _health_record(alias, False)
    return DEFAULT_DB_ALIAS


def replica_read(call: Callable[[], T], *, user_id: int | None) -> T:
    """Run the recommender's work for one request with its reads on a replica (see the module).

    A replica that fails during the call is marked down and the call runs again on the primary;
    the work is a read followed by idempotent writes (the answer log comes last), so a second
    run writes nothing twice. An outage of the primary is raised as before (a 503).
    """
    alias = replica_choose(user_id=user_id)
    if alias == DEFAULT_DB_ALIAS:
        return call()
    token = _reading.set(alias)
    try:
        return call()
    except DATABASE_OUTAGES as error:
        if _probe(alias):
            raise
        _health_record(alias, False)
        logger.warning(
            "replica %s failed during a request (%s): answered from the primary", alias, type(error).__name__
        )
    finally:
        _reading.reset(token)
    return call()
