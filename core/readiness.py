"""Readiness checks, registered by the app that owns each dependency (GET /api/v1/health/ready/).

Each app's AppConfig.ready() registers its checks; the readiness API runs them in registration
order (INSTALLED_APPS order: core's database and broker, then the recommender's encoder). A check
returns a dict with "ok" and optional details, or raises; registering loads nothing. A check
that is not ok yet only because its process is still starting adds "warming": True (readiness
then says "warming" rather than "unavailable").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection

from core.queueing import unqueued_count

BROKER_TIMEOUT_SECONDS = 1.0

ReadinessCheck = Callable[[], dict[str, Any]]

READINESS_CHECKS: dict[str, ReadinessCheck] = {}
# Checks whose failure leaves the process able to serve: readiness says "degraded" (200), so a
# load balancer keeps sending traffic, instead of "unavailable" (503).
DEGRADING_CHECKS: set[str] = set()


def readiness_check_register(name: str, check: ReadinessCheck, *, critical: bool = True) -> None:
    READINESS_CHECKS[name] = check
    if critical:
        DEGRADING_CHECKS.discard(name)
    else:
        DEGRADING_CHECKS.add(name)


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True}


def check_broker() -> dict[str, Any]:
    url = settings.CELERY_BROKER_URL
    if not url:
        return {"ok": True, "detail": "no broker configured: tasks run in-process (development only)"}
    from kombu import Connection

    with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as broker:
        broker.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    return {"ok": True, "unqueued": unqueued_count()}
