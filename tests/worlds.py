"""Rows built once per test module and shared by its tests, the way Django's TestCase.setUpTestData
shares a class's rows: one outer transaction for the module, each test in a savepoint inside it.

Only for modules whose tests all run in a transaction (`django_db`, never `transaction=True`: a
flush would wipe the shared rows) and all ask for the world (a test without it would see its rows).
"""

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import transaction


def module_world(build: Callable[[], dict[str, Any]]) -> tuple[Any, Any]:
    """Two fixtures: the rows built once per module (rolled back at its end) and, per test, a
    deep copy of what build returned, so a test that changes an instance in memory changes it
    for itself only (setUpTestData's copies do the same)."""

    @pytest.fixture(scope="module")
    def rows(django_db_setup, django_db_blocker) -> Iterator[dict[str, Any]]:
        with django_db_blocker.unblock(), transaction.atomic():
            yield build()
            transaction.set_rollback(True)

    def per_test(rows: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(rows)

    return rows, per_test
