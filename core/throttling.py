"""Throttles whose rates are read from settings at request time (env-driven, see README "API").

DRF binds DEFAULT_THROTTLE_RATES when its module is imported; reading api_settings on each
request lets tests and deployments change rates without re-importing anything.
"""

from typing import Any

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class _LiveRates:
    scope: str

    def get_rate(self) -> str | None:
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
        return rates.get(self.scope)


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
