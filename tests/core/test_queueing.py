"""The seam catalog and users queue the recommender's work through (core/queueing.py)."""

import pytest

from core import queueing

pytestmark = pytest.mark.django_db

TASK_NAMES = [queueing.EMBED_ITEM, queueing.EMBED_ACTIVITY, queueing.EMBED_PENDING, queueing.REFRESH_USER_INTEREST]


@pytest.mark.parametrize("task_name", TASK_NAMES)
def test_every_queueable_name_is_a_registered_task_of_the_same_name(task_name):
    assert queueing.registered_task(task_name).name == task_name


def test_an_unknown_task_name_is_an_error_not_a_silent_drop():
    with pytest.raises(KeyError):
        queueing.registered_task("recommendations.tasks.no_such_task")


def test_queue_on_commit_runs_the_task_only_after_the_commit(django_capture_on_commit_callbacks, monkeypatch):
    calls = []
    task = queueing.registered_task(queueing.REFRESH_USER_INTEREST)
    monkeypatch.setattr(task, "delay", lambda **kwargs: calls.append(kwargs))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        queueing.queue_on_commit(queueing.REFRESH_USER_INTEREST, user_id=7)
        assert calls == []

    assert len(callbacks) == 1
    assert calls == [{"user_id": 7}]


RACE = """
import threading, django
django.setup()
from core.queueing import EMBED_ACTIVITY, registered_task
barrier, errors = threading.Barrier(16), []
def look_up():
    barrier.wait()
    try:
        registered_task(EMBED_ACTIVITY)
    except Exception as error:
        errors.append(type(error).__name__)
threads = [threading.Thread(target=look_up) for _ in range(16)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("ERRORS", len(errors), sorted(set(errors)))
"""


@pytest.mark.slow
def test_threads_of_a_fresh_web_process_find_the_task_while_another_imports_it():
    # A fresh process, as a gunicorn worker with threads is: its first writes all look the task
    # up at once. Without the lock 2 runs of 3 had threads answered NotRegistered (a 500).
    import os
    import subprocess
    import sys

    from django.conf import settings

    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", "PYTHONPATH": str(settings.BASE_DIR)}
    for _ in range(3):
        result = subprocess.run(
            [sys.executable, "-c", RACE], env=environment, capture_output=True, text=True, timeout=120, check=True
        )
        assert "ERRORS 0 []" in result.stdout, result.stdout + result.stderr[-2000:]
