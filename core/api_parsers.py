"""Request body parsing with a stated size limit (413 with the limit in the message)."""

from __future__ import annotations

import json
import math

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.api_errors import RequestTooLarge


def body_limit() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class LimitedJSONParser(JSONParser):
    """JSON only, at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes, strictly valid (no NaN/Infinity).

    DRF reads the raw stream, past Django's own DATA_UPLOAD_MAX_MEMORY_SIZE check, so the limit
    is applied here: the declared Content-Length first, then what is actually read (a chunked
    body has no declared length).
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = body_limit()
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        too_large = RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")
        try:
            if declared and int(declared) > limit:
                raise too_large
        except ValueError:
            raise ParseError("Content-Length is not a number.") from None
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise too_large
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("The body is not valid UTF-8.") from None
        try:
            data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except (ValueError, RecursionError) as error:
            raise ParseError(f"The body is not valid JSON: {error}") from None
        if _has_lone_surrogate(data):
            # "\ud800" escapes decode to text PostgreSQL cannot store: refuse it here, once.
            raise ParseError("The body contains an invalid Unicode escape (a lone surrogate).")
        return data


def _finite_float(literal: str) -> float:
    # 1e400 parses as infinity, which PostgreSQL's jsonb cannot store.
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal[:20]} is out of range")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


# No endpoint takes anything deeper (item attributes are the deepest); deeper input is refused
# before anything recurses over it.
MAX_DEPTH = 32


def _has_lone_surrogate(value, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        raise ParseError(f"The body is nested deeper than the limit of {MAX_DEPTH} levels.")
    if isinstance(value, str):
        return any("\ud800" <= character <= "\udfff" for character in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(key) or _has_lone_surrogate(item, depth + 1) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item, depth + 1) for item in value)
    return False
