"""The one seam through which catalog and users queue the recommender's work (after commit).

The apps below the recommender name its tasks instead of importing them, in the manner of
Zulip's queue_event_on_commit: they write rows, and the recommender's workers turn the rows into
vectors. The names are the tasks' registered names (config/settings.py routes them by the same
names), and tests/core/test_queueing.py checks every constant names a registered task.
"""

from __future__ import annotations

from typing import Any

from celery import Task, current_app
from django.db import transaction

EMBED_ITEM = "recommendations.tasks.embed_item"
EMBED_ACTIVITY = "recommendations.tasks.embed_activity"
EMBED_PENDING = "recommendations.tasks.embed_pending"
REFRESH_USER_INTEREST = "recommendations.tasks.refresh_user_interest"


def registered_task(task_name: str) -> Task:
    """The task registered under this name in the project's Celery app.

    A web process has not imported the tasks modules yet (Celery discovers them when a worker
    starts), so a first miss imports them; an unknown name still raises KeyError.
    """
    app = current_app._get_current_object()
    if task_name not in app.tasks:
        app.loader.import_default_modules()
    return app.tasks[task_name]


def queue_on_commit(task_name: str, **kwargs: Any) -> None:
    """Queue the task with these keyword arguments once the current transaction commits.

    Never before: a worker would look for a row that is not there yet. .delay (not send_task)
    so that tests and brokerless development, where tasks run eagerly, run it in-process.
    """
    transaction.on_commit(lambda: registered_task(task_name).delay(**kwargs))
