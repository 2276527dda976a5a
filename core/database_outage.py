"""The database is unreachable: 503 with Retry-After, never a 500 (issue #13, item 3).

PostgreSQL restarting, failing over or cut off by the network raises django.db's
OperationalError (could not connect, the server closed the connection) or InterfaceError (the
connection is already closed). Neither is the caller's fault nor a bug to fix: the request can
simply be tried again in a few seconds, so the answer says so. Under /api/ it is the API's JSON
error shape (core.api_errors); pages get a 503 page that reads nothing from the database
(core.error_views, templates/503.html).

Nothing acknowledged is lost by answering 503: a write either committed before the error (and a
client retrying it with its Idempotency-Key gets the first answer) or rolled back with it.
Persistent connections broken by the outage are closed at the end of the request (Django does
so after an error) and checked before reuse (CONN_HEALTH_CHECKS), so the process recovers by
itself once the server is back.
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

DATABASE_OUTAGES = (OperationalError, InterfaceError)
# Long enough for a restart or a failover to finish, short enough that a client is not kept
# waiting once it is back (the embedded server restarts in about a second here).
RETRY_AFTER_SECONDS = 5
CODE = "database_unavailable"
MESSAGE = "The database cannot be reached just now; nothing was lost: try again in a few seconds."


def is_database_outage(error: BaseException | None) -> bool:
    return isinstance(error, DATABASE_OUTAGES)


def database_outage_log(error: BaseException, where: str, *, answered: int = 503) -> None:
    # The error's class only: its text can name the server's address.
    logger.warning("database unavailable in %s (%s): answered %d", where, type(error).__name__, answered)


def database_outage_headers() -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_SECONDS)}
