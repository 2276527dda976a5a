"""Idempotent writes: the `Idempotency-Key` request header (README "API").

A client that sends `Idempotency-Key: <key>` with a write may retry it after a timeout or a
dropped connection: a retry within settings.IDEMPOTENCY_KEY_RETENTION gets the first answer
back (status, body, Content-Type and Location), marked `Idempotent-Replayed: true`, and writes
nothing. The views opt in with `@idempotent` on their handler; the OpenAPI schema documents the
header for exactly those operations (core.api_schema).

What is chosen, after draft-ietf-httpapi-idempotency-key-header and Stripe's API:
- A key belongs to one person and one method and path: another person (or another endpoint)
  with the same key is a new request. Anonymous callers cannot use keys (400): there is no one
  to keep them for.
- The same key with another request (query string or JSON body, compared after parsing) is 422.
- While the first request with a key is still running, a second one is 409 with Retry-After
  (the draft's answer): waiting instead would hold a web worker per retry.
- Only 2xx answers are kept. A 4xx wrote nothing, and the client is expected to fix the request
  and send it again under the same key; a 5xx or an exception rolls the write back and releases
  the key. (Stripe keeps 4xx answers too; here a retry of a refused request simply runs again.)
- The kept answer is written in the transaction of the write itself, so a crash can leave
  neither a write without its key nor a key without its write.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse, HttpResponseBase
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_errors import error_response
from core.models import IdempotencyRecord

logger = logging.getLogger(__name__)

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Visible ASCII but the double quote, the comma (a repeated header arrives comma-joined) and the
# backslash. A UUID or a random token fits; so does the draft's quoted form ("…"), unquoted here.
_KEY_CHARACTER = r"[\x21\x23-\x2B\x2D-\x5B\x5D-\x7E]"
KEY_PATTERN = rf'^(?:{_KEY_CHARACTER}{{1,{MAX_KEY_LENGTH}}}|"{_KEY_CHARACTER}{{1,{MAX_KEY_LENGTH}}}")$'
_KEY = re.compile(KEY_PATTERN)
KEY_RULE = (
    f"must be 1 to {MAX_KEY_LENGTH} visible ASCII characters without spaces, double quotes, commas or "
    "backslashes (a UUID is a good key), optionally in double quotes"
)
# A second request with a key still in use is told to come back in this many seconds.
IN_PROGRESS_RETRY_AFTER = 1
# The headers of the first answer a replay repeats (besides its status and body).
KEPT_HEADERS = ("Content-Type", "Location", "Content-Location")

Handler = Callable[..., HttpResponseBase]


def idempotent(handler: Handler) -> Handler:
    """Make an APIView handler (post, patch) honour the Idempotency-Key header.

    It runs after authentication, permissions and throttles (DRF's `initial`), so those answer
    first; without the header the handler runs exactly as before.
    """

    @functools.wraps(handler)
    def handle(view: APIView, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        key = idempotency_key_of(request)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not request.user.is_authenticated:
            raise ValidationError({IDEMPOTENCY_KEY_HEADER: ["is kept per person: sign in or send a token to use one"]})
        scope: dict[str, Any] = {"user_id": request.user.pk, "method": request.method, "path": request.path, "key": key}
        fingerprint = _request_fingerprint(request)
        with transaction.atomic():
            if not _lock(scope):
                return _in_progress()
            record = IdempotencyRecord.objects.filter(**scope).first()
            if record is not None and not _expired(record.created_at):
                if record.request_fingerprint != fingerprint:
                    return error_response(
                        status_code=422,
                        code="idempotency_key_reused",
                        message=f"{IDEMPOTENCY_KEY_HEADER}: this key was sent with another request; "
                        "use a new key for a new request",
                        fields={IDEMPOTENCY_KEY_HEADER: ["was sent with another request body or query string"]},
                    )
                return _replay(record)
            if record is not None:
                record.delete()  # past its retention, not yet removed by the periodic task
            response = handler(view, request, *args, **kwargs)
            if not 200 <= response.status_code < 300:
                # Not kept (see the module's docstring) and nothing of it either.
                transaction.set_rollback(True)
                return response
            response = _rendered(view, request, response, *args, **kwargs)
            try:
                with transaction.atomic():
                    IdempotencyRecord.objects.create(
                        **scope,
                        request_fingerprint=fingerprint,
                        status_code=response.status_code,
                        response_body=response.content.decode(),
                        response_headers={name: response[name] for name in KEPT_HEADERS if response.has_header(name)},
                        created_at=timezone.now(),
                    )
            except IntegrityError:
                # The lock makes this unreachable; the unique constraint is what guarantees it.
                transaction.set_rollback(True)
                return _in_progress()
            return response

    handle.idempotency_key = True  # type: ignore[attr-defined]  # read by core.api_schema
    return handle


def is_idempotent(handler: object) -> bool:
    return getattr(handler, "idempotency_key", False) is True


def idempotency_key_of(request: Request) -> str | None:
    """The request's key (quotes removed), None without one; a malformed one is a 400 naming it."""
    raw = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if raw is None:
        return None
    if not _KEY.fullmatch(raw):
        raise ValidationError({IDEMPOTENCY_KEY_HEADER: [KEY_RULE]})
    return raw[1:-1] if raw.startswith('"') else raw


def idempotency_records_expire(*, now: datetime | None = None) -> int:
    """Remove the kept answers older than settings.IDEMPOTENCY_KEY_RETENTION; how many went."""
    cutoff = (now or timezone.now()) - settings.IDEMPOTENCY_KEY_RETENTION
    removed, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    logger.info("idempotency keys expired removed=%d", removed)
    return removed


def _expired(created_at: datetime) -> bool:
    return created_at < timezone.now() - settings.IDEMPOTENCY_KEY_RETENTION


def _request_fingerprint(request: Request) -> str:
    # The parsed body, keys sorted: a retry that re-serialises the same JSON is the same request.
    canonical = json.dumps(
        {"query": request.META.get("QUERY_STRING", ""), "body": request.data},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _lock(scope: dict[str, Any]) -> bool:
    """Take this key's transaction-scoped advisory lock, or say another request holds it.

    Held until the write commits or rolls back: a second request with the key either finds it
    taken (409), or takes it afterwards and reads the first answer (or, after a rollback, none).
    The lock's number is the first 64 bits of a sha256 of the scope, so two different keys
    share a lock with a chance of 2**-64 (and would only wait on each other, never mix answers).
    """
    digest = hashlib.sha256(
        "\0".join(str(scope[name]) for name in ("user_id", "method", "path", "key")).encode()
    ).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [int.from_bytes(digest[:8], "big", signed=True)])
        return bool(cursor.fetchone()[0])


def _in_progress() -> Response:
    return error_response(
        status_code=409,
        code="idempotency_key_in_use",
        message=f"A request with this {IDEMPOTENCY_KEY_HEADER} is still being processed; "
        f"retry after {IN_PROGRESS_RETRY_AFTER} s to get its answer",
        headers={"Retry-After": str(IN_PROGRESS_RETRY_AFTER)},
        retry_after=IN_PROGRESS_RETRY_AFTER,
    )


def _rendered(view: APIView, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any) -> HttpResponse:
    """The answer as it will be sent: DRF renders it after the handler returns, the record needs
    its bytes now. finalize_response is safe to run again (dispatch does)."""
    if isinstance(response, Response):
        response = view.finalize_response(request, response, *args, **kwargs)
        response.render()
    if not isinstance(response, HttpResponse):
        raise TypeError(f"{type(view).__name__} answered a {type(response).__name__}, which cannot be kept")
    return response


def _replay(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(record.response_body, status=record.status_code)
    for name, value in record.response_headers.items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    logger.info("idempotent replay user=%s path=%s status=%d", record.user_id, record.path, record.status_code)
    return response
