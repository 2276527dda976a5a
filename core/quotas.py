"""Per-person quotas on writes: amounts (activities, bytes of text) per fixed window of time.

Throttles count requests; a quota counts what the requests carry, so one batch of 100 long
reviews costs 100 activities and its bytes of text. Counters live in the default cache, shared
by every web process (config/settings.py CACHES); while it cannot be reached each process counts
on its own, as the throttles do (core.throttling).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.core.cache import cache

from core.exceptions import ApplicationError
from core.throttling import CACHE_OUTAGES, LOCAL_COUNTERS

logger = logging.getLogger(__name__)


class QuotaExceededError(ApplicationError):
    """Over a quota: 429 with the limit in the message and the seconds until the window ends."""

    status_code = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Quota:
    name: str  # what is counted, for the message: "activities", "bytes of text"
    limit: int  # per window; 0 = no quota
    window_seconds: int
    window_name: str  # "minute", "day"


def quotas_consume(*, ident: str, amounts: list[tuple[Quota, int]]) -> None:
    """Count these amounts against their quotas, all or none: over any limit, nothing is counted
    and QuotaExceededError names the first quota exceeded."""
    now = time.time()
    counted: list[tuple[str, int]] = []
    try:
        for quota, amount in amounts:
            if quota.limit <= 0 or amount <= 0:
                continue
            window = int(now // quota.window_seconds)
            key = f"quota:{quota.name.replace(' ', '_')}:{ident}:{window}"
            total = _add(key, amount, timeout=quota.window_seconds + 60)
            counted.append((key, amount))
            if total > quota.limit:
                retry_after = max(1, int((window + 1) * quota.window_seconds - now) + 1)
                raise QuotaExceededError(
                    f"Over the limit of {quota.limit} {quota.name} per {quota.window_name}: "
                    f"this request carries {amount}, {total - amount} already counted in this {quota.window_name}. "
                    f"Retry after {retry_after} s.",
                    retry_after=retry_after,
                )
    except QuotaExceededError:
        for key, amount in counted:
            _add(key, -amount, timeout=None)
        raise


def _add(key: str, amount: int, *, timeout: int | None) -> int:
    """Atomically add to a counter (created at 0 with this timeout) and return its new value."""
    for counters in (cache, LOCAL_COUNTERS):
        try:
            if timeout is not None:
                counters.add(key, 0, timeout=timeout)
            try:
                return counters.incr(key, amount)
            except ValueError:  # expired between add and incr, or missing when giving back
                if timeout is None:
                    return 0
                counters.set(key, amount, timeout=timeout)
                return amount
        except CACHE_OUTAGES as error:
            logger.warning("quota cache unavailable (%s): counting in this process", type(error).__name__)
    raise AssertionError("the local counters cannot fail")
