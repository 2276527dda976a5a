"""Request bodies without a Content-Length (`Transfer-Encoding: chunked`), read up to the limit.

Django's WSGIRequest reads CONTENT_LENGTH bytes only, so a chunked body reached every view
empty (the API answered 400 "field required" for a body it never read) and could never be
refused as too large. The WSGI server (gunicorn) decodes the chunks and ends wsgi.input at the
body's end, which it says with `wsgi.input_terminated`; this middleware reads that stream up to
DATA_UPLOAD_MAX_MEMORY_SIZE and hands Django the body as if its length had been declared, or
answers 413 (in the API's JSON shape under /api/) when there is more.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.error_shape import error_json_response, is_api_request

logger = logging.getLogger(__name__)


def body_refused(request: HttpRequest, *, status: int, code: str, message: str) -> HttpResponse:
    """The refusal in the API's error shape under /api/, the site's error page elsewhere."""
    if is_api_request(request):
        return error_json_response(status_code=status, code=code, message=message)
    return render(request, "400.html", {"message": message}, status=status)


def _is_chunked(request: HttpRequest) -> bool:
    codings = request.META.get("HTTP_TRANSFER_ENCODING", "")
    return "chunked" in codings.lower() and not request.META.get("CONTENT_LENGTH")


class ChunkedBodyMiddleware:
    """Reads a chunked body before anything else does (first in MIDDLEWARE)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not _is_chunked(request) or not request.META.get("wsgi.input_terminated"):
            # Without wsgi.input_terminated the stream may not end with the body: reading it
            # could wait for the next request. Such a server's chunked body stays unread (empty).
            return self.get_response(request)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            body = request.META["wsgi.input"].read(limit + 1)
        except OSError as error:  # the server's read timeout (config/gunicorn.conf.py), a reset
            logger.info("chunked body not read path=%s (%s)", request.path, type(error).__name__)
            return body_refused(
                request,
                status=408,
                code="request_timeout",
                message="The request body stopped arriving before it was complete.",
            )
        if len(body) > limit:
            return body_refused(
                request,
                status=413,
                code="request_too_large",
                message=f"The request body is larger than the limit of {limit} bytes.",
            )
        # What WSGIRequest.__init__ builds from a declared length: the body, now of known length.
        request.META["CONTENT_LENGTH"] = str(len(body))
        # WSGIRequest's own stream type; the stubs declare BinaryIO.
        request._stream = LimitedStream(io.BytesIO(body), len(body))  # type: ignore[assignment]
        return self.get_response(request)
