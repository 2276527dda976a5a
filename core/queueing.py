"""The one seam through which catalog and users queue the recommender's work (after commit).

The apps below the recommender name its tasks instead of importing them, in the manner of
Zulip's queue_event_on_commit: they write rows, and the recommender's workers turn the rows into
vectors. The names are the tasks' registered names (config/settings.py routes them by the same
names), and tests/core/test_queueing.py checks every constant names a registered task.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from celery import Task, current_app
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerOperationalError

logger = logging.getLogger(__name__)

# What publishing raises when the broker cannot be reached: kombu wraps the transport's own
# connection errors (redis, amqp) in its OperationalError; a bare socket error may come through.
BROKER_ERRORS = (BrokerOperationalError, ConnectionError, TimeoutError)
_IMPORT_LOCK = threading.Lock()
# Tasks not queued because the broker was down, by name, in this process.
UNQUEUED: Counter[str] = Counter()

EMBED_ITEM = "recommendations.tasks.embed_item"
EMBED_ACTIVITY = "recommendations.tasks.embed_activity"
EMBED_ACTIVITY_BATCH = "recommendations.tasks.embed_activity_batch"
EMBED_PENDING = "recommendations.tasks.embed_pending"
REFRESH_USER_INTEREST = "recommendations.tasks.refresh_user_interest"


def registered_task(task_name: str) -> Task:
    """The task registered under this name in the project's Celery app.

    A web process has not imported the tasks modules yet (Celery discovers them when a worker
    starts), so a first miss imports them; an unknown name still raises KeyError.
    """
    app = current_app._get_current_object()
    if task_name not in app.tasks:
        # One thread imports; the others wait for it. Under gunicorn's threads, a second thread
        # that came in while the first was importing found the modules half-imported and their
        # tasks not yet registered: NotRegistered after the commit, a 500 (seen in the soak).
        with _IMPORT_LOCK:
            if task_name not in app.tasks:
                app.loader.import_default_modules()
    return app.tasks[task_name]


def queue_on_commit(task_name: str, *, unqueued: Callable[[], object] | None = None, **kwargs: Any) -> None:
    """Queue the task with these keyword arguments once the current transaction commits.

    Never before: a worker would look for a row that is not there yet. .delay (not send_task)
    so that tests and brokerless development, where tasks run eagerly, run it in-process.

    Best effort: the rows are committed by then and the person was told so, so a broker that
    is down must not turn the answer into a 500 (a client retrying it would write the event
    twice). The error is logged and counted, `unqueued` (if given) marks the work for the
    sweep (sweep_pending_embeddings, every minute once the broker is back), and the answer is
    the normal one. Rows that wait as pending need no mark: the sweep finds them by status.
    """
    transaction.on_commit(lambda: _send(task_name, unqueued=unqueued, kwargs=kwargs))


def _send(task_name: str, *, unqueued: Callable[[], object] | None, kwargs: dict[str, Any]) -> None:
    try:
        registered_task(task_name).delay(**kwargs)
    except BROKER_ERRORS as error:
        UNQUEUED[task_name] += 1
        logger.warning(
            "broker unavailable: %s not queued (%s, %d since start); the sweep picks the work up",
            task_name,
            type(error).__name__,
            UNQUEUED[task_name],
        )
        if unqueued is not None:
            unqueued()


def unqueued_count() -> int:
    """Tasks this process could not queue since it started (readiness reports it)."""
    return sum(UNQUEUED.values())
