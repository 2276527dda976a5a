"""Celery tasks of core: periodic housekeeping, each a call of one function."""

from celery import shared_task

from core import idempotency


# No retries: an hourly run that misses (the database away) is made up by the next one.
@shared_task
def idempotency_records_expire() -> int:
    """Periodic (beat, bulk queue): remove kept answers past IDEMPOTENCY_KEY_RETENTION."""
    return idempotency.idempotency_records_expire()
