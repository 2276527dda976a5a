"""The Celery broker's settings, from its URL: Redis, or RabbitMQ (the recommended production broker).

RabbitMQ keeps its queues on disk and, as quorum queues (RabbitMQ 3.8 and later), replicated
across its nodes; the publisher waits for the broker's confirmation. Redis keeps queued tasks in
memory: a restart loses what was waiting (the sweep heals it, core.queueing). Used by
config/settings.py and again by config/settings_test.py for the test run's own broker.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

REDIS_SCHEMES = ("redis", "rediss")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
QUEUES = ("interactive", "bulk")


def broker_scheme(url: str | None, *, variable: str = "CELERY_BROKER_URL") -> str | None:
    """The URL's scheme, or a clear error naming the variable when it is none of the tested brokers."""
    if not url:
        return None
    scheme = urlsplit(url).scheme
    if scheme not in REDIS_SCHEMES + AMQP_SCHEMES:
        raise ImproperlyConfigured(
            f"{variable} must start with redis://, rediss://, amqp:// or amqps://, got {scheme or 'no'} scheme"
        )
    return scheme


def broker_settings(url: str | None, *, queue_type: str) -> dict[str, Any]:
    """Celery settings (without the CELERY_ prefix, lower case as app.conf takes them) for this broker.

    RabbitMQ: the interactive and bulk queues durable, of `queue_type` (quorum or classic), bound
    to topic exchanges: Celery sends a task retried with a countdown through RabbitMQ's native
    delayed delivery when its queues are quorum queues, which needs topic exchanges (a direct
    one is refused with a warning). Publisher confirms on. Redis: Celery's defaults.
    """
    if broker_scheme(url) not in AMQP_SCHEMES:
        return {"task_queues": None, "task_default_queue_type": "classic", "broker_transport_options": {}}
    from kombu import Exchange, Queue

    return {
        "task_queues": [
            Queue(
                name,
                Exchange(name, type="topic", durable=True),
                routing_key=name,
                durable=True,
                queue_arguments={"x-queue-type": queue_type},
            )
            for name in QUEUES
        ],
        "task_default_queue_type": queue_type,
        # A task counts as queued once RabbitMQ confirmed it, not when it left this process.
        "broker_transport_options": {"confirm_publish": True},
    }
