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
