"""The evaluation runs in a database of its own on the same server, never the live one."""

from __future__ import annotations

from contextlib import contextmanager

from django.core.management import call_command
from django.db import connections

from recommendations.evaluation.split import EvaluationError


@contextmanager
def isolated_database(name: str):
    """Point the default connection at a fresh database `name` on the same server, migrated."""
    from psycopg import sql

    def create(cursor) -> None:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        cursor.execute(drop.as_string(cursor.connection))
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)).as_string(cursor.connection))

    with _default_database(name, prepare=create):
        yield


@contextmanager
def attached_database(name: str):
    """Point the default connection at an existing database `name` (kept by an earlier run), migrated."""

    def check(cursor) -> None:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            raise EvaluationError(f"database {name} does not exist")

    with _default_database(name, prepare=check):
        yield


@contextmanager
def _default_database(name: str, *, prepare):
    """The default connection on database `name` (after `prepare` ran on the live one), migrated;
    back on the live database afterwards."""
    default = connections["default"]
    original = default.settings_dict["NAME"]
    if name == original:
        raise EvaluationError("the evaluation database must not be the live one")
    default.ensure_connection()
    with default.cursor() as cursor:
        prepare(cursor)
    default.close()
    default.settings_dict["NAME"] = name
    try:
        call_command("migrate", verbosity=0, interactive=False)
        yield
    finally:
        default.close()
        default.settings_dict["NAME"] = original
