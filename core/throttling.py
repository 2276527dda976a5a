"""Throttles whose rates are read from settings at request time (env-driven, see README "API").

DRF binds DEFAULT_THROTTLE_RATES when its module is imported; reading api_settings on each
request lets tests and deployments change rates without re-importing anything.
"""

import logging
import math
from collections.abc import Sequence
from typing import Any

from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, BaseThrottle, UserRateThrottle

logger = logging.getLogger(__name__)

# Counters are kept in the shared cache (Redis in production, config/settings.py CACHES); while
# it cannot be reached, each process counts in its own memory: the limits hold per process, as
# before the cache was shared, and a Redis outage never turns the whole API into 500s.
CACHE_OUTAGES = (RedisError, OSError)
LOCAL_COUNTERS = LocMemCache("throttle-fallback", {})


class _LiveRates:
    scope: str
    cache: Any

    def get_rate(self) -> str | None:
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
        return rates.get(self.scope)

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)  # type: ignore[misc]  # the DRF throttle mixed in
        except CACHE_OUTAGES as error:
            logger.warning("throttle cache unavailable (%s): counting in this process", type(error).__name__)
            self.cache = LOCAL_COUNTERS
            return super().allow_request(request, view)  # type: ignore[misc]


class AnonymousThrottle(_LiveRates, AnonRateThrottle):
    """Per client address, for anonymous callers."""

    scope = "anon"


class UserThrottle(_LiveRates, UserRateThrottle):
    """Per signed-in person (anonymous callers: per address)."""

    scope = "user"


class FreeTextAnonymousThrottle(AnonymousThrottle):
    """Free-text answers run the encoder: a tighter budget for anonymous callers."""

    scope = "text_anon"


class FreeTextUserThrottle(UserThrottle):
    scope = "text_user"


class AuthTokenThrottle(AnonymousThrottle):
    """Password guessing through the token endpoint: per address, signed in or not."""

    scope = "auth"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


FREE_TEXT_THROTTLES = [FreeTextAnonymousThrottle, FreeTextUserThrottle]


def client_address(request: HttpRequest) -> str:
    """The address every per-address limit keys on: DRF's reading, so the API's throttles, the
    pages' throttles and the sign-in lockout (AXES_CLIENT_IP_CALLABLE) always agree.

    With NUM_PROXIES 0 (the default) it is the connection's address and X-Forwarded-For is
    ignored; with N trusted proxies, the address the outermost of them appended.
    """
    return BaseThrottle().get_ident(request)  # type: ignore[arg-type]  # reads request.META only


def page_throttle_wait(request: HttpRequest, throttle_classes: Sequence[type[BaseThrottle]]) -> float | None:
    """Seconds to wait when one of the API's throttles refuses this page request, else None.

    Pages that run the encoder share the API's budgets (the same cache keys), so a person cannot
    double their free text by alternating the page and the API. Every throttle counts the
    request, as DRF's own check does.
    """
    waits = []
    for throttle_class in throttle_classes:
        throttle = throttle_class()
        if not throttle.allow_request(request, None):  # type: ignore[arg-type]  # reads META and user only
            waits.append(throttle.wait() or 1.0)
    return max(waits) if waits else None


def throttled_page(request: HttpRequest, wait: float, *, message: str, fragment: bool = False) -> HttpResponse:
    """The 429 page (or only its message, for a page that asked for a fragment) with Retry-After."""
    retry_after = max(1, math.ceil(wait))
    template = "429_message.html" if fragment else "429.html"
    response = render(request, template, {"message": message, "retry_after": retry_after}, status=429)
    response["Retry-After"] = str(retry_after)
    return response
