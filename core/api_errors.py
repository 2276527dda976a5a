"""The one exception handler of the API: every error is the same JSON shape.

    {"error": {"code": "validation_error", "message": "...", "fields": {"k": ["..."]}}}

`fields` is there for validation errors only and names each bad field with a dotted path
(`activities.2.kind`); `retry_after` (seconds) comes with throttling and with a database outage
(503 "database_unavailable", core.database_outage). Domain errors
(core.exceptions.ApplicationError) become their 4xx with their message; anything unexpected is
logged with its traceback and answered as a 500 in the same shape, never an HTML page.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, UnreadablePostError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core import database_outage
from core.exceptions import ApplicationError
from core.quotas import QuotaExceededError

logger = logging.getLogger(__name__)

SERVER_ERROR_MESSAGE = "Something went wrong on our side; it has been logged."


class RequestTimeout(exceptions.APIException):
    status_code = status.HTTP_408_REQUEST_TIMEOUT
    default_detail = "The request body stopped arriving before it was complete."
    default_code = "request_timeout"


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"dotted.field.path": [messages]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors" and prefix:
                name = prefix  # an error about the whole list or object at this path
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            for path, messages in flatten_errors(value, name).items():
                flat.setdefault(path, []).extend(messages)
    elif isinstance(detail, list) and any(isinstance(value, dict | list) for value in detail):
        for index, value in enumerate(detail):
            if value:
                name = f"{prefix}.{index}" if prefix else str(index)
                for path, messages in flatten_errors(value, name).items():
                    flat.setdefault(path, []).extend(messages)
    elif isinstance(detail, list):
        flat[prefix or "non_field_errors"] = [str(value) for value in detail]
    else:
        flat[prefix or "non_field_errors"] = [str(detail)]
    return flat


def error_response(
    *, status_code: int, code: str, message: str, fields: dict | None = None, headers: dict | None = None, **extra
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    body.update(extra)
    return Response({"error": body}, status=status_code, headers=headers)


def _first_message(fields: dict[str, list[str]]) -> str:
    path, messages = next(iter(fields.items()))
    return f"{path}: {messages[0]}" if path != "non_field_errors" else messages[0]


def api_exception_handler(exc: Exception, context: dict) -> Response:
    set_rollback()
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = RequestTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    elif isinstance(exc, UnreadablePostError):
        # The client stopped sending its body: the WSGI server's read timeout (config/gunicorn.conf.py).
        exc = RequestTimeout()

    if isinstance(exc, QuotaExceededError):
        return error_response(
            status_code=exc.status_code,
            code="quota_exceeded",
            message=exc.message,
            headers={"Retry-After": str(exc.retry_after)},
            retry_after=exc.retry_after,
        )
    if isinstance(exc, ApplicationError):
        fields = exc.extra.get("fields")
        code = "not_found" if exc.status_code == 404 else "invalid_request"
        return error_response(status_code=exc.status_code, code=code, message=exc.message, fields=fields)
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        return error_response(
            status_code=exc.status_code, code="validation_error", message=_first_message(fields), fields=fields
        )
    if isinstance(exc, exceptions.APIException):
        headers = {}
        extra: dict[str, Any] = {}
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)  # Throttled sets it; the stubs do not declare it
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            headers["Retry-After"] = str(int(wait))
            extra["retry_after"] = int(wait)
        detail = exc.detail
        message = str(detail) if not isinstance(detail, dict | list) else _first_message(flatten_errors(detail))
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else str(exc.default_code)
        return error_response(status_code=exc.status_code, code=code, message=message, headers=headers, **extra)
    if database_outage.is_database_outage(exc):
        database_outage.database_outage_log(exc, type(context.get("view")).__name__)
        seconds = database_outage.RETRY_AFTER_SECONDS
        return error_response(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            code=database_outage.CODE,
            message=database_outage.MESSAGE,
            headers=database_outage.database_outage_headers(),
            retry_after=seconds,
        )
    if isinstance(exc, SuspiciousOperation):
        return error_response(status_code=400, code="bad_request", message="The request was refused as malformed.")

    view = context.get("view")
    logger.exception("unexpected error in %s", type(view).__name__ if view else "API", exc_info=exc)
    return error_response(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        code="server_error",
        message=SERVER_ERROR_MESSAGE,
    )
