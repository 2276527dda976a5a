"""The API's JSON error shape for every error under /api/; Django's HTML pages everywhere else.

DRF's views answer their own errors (core.api_errors.api_exception_handler). The handlers here
(config/urls.py handler400/403/404/500) cover what happens before or outside them: a foreign Host
header (DisallowedHost, found by CommonMiddleware before any view), a body over the limit read
outside DRF, a path no view serves, an exception in a middleware. ApiErrorShapeMiddleware
reshapes what a view under /api/ answered in another format (the Swagger page's HTML 405, the
schema view's YAML errors).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.template import loader
from django.views import defaults

from core import database_outage
from core.error_shape import error_json_response, is_api_request


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api_request(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        message = f"The request body is larger than the limit of {limit} bytes."
        return error_json_response(status_code=413, code="request_too_large", message=message)
    if isinstance(exception, DisallowedHost):
        message = "The Host header names a host this server does not serve."
        return error_json_response(status_code=400, code="bad_request", message=message)
    return error_json_response(status_code=400, code="bad_request", message="The request was refused as malformed.")


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api_request(request):
        return defaults.permission_denied(request, exception)
    return error_json_response(
        status_code=403, code="permission_denied", message="You do not have permission to perform this action."
    )


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api_request(request):
        return defaults.page_not_found(request, exception)
    return error_json_response(status_code=404, code="not_found", message=f"No API endpoint at {request.path}.")


def server_error(request: HttpRequest) -> HttpResponse:
    # Django has logged the exception (django.request) before calling this handler, and calls it
    # while handling that exception, so sys.exc_info() holds it.
    error = sys.exc_info()[1]
    if error is not None and database_outage.is_database_outage(error):
        return _database_unavailable(request, error)
    if not is_api_request(request):
        return defaults.server_error(request)
    return error_json_response(
        status_code=500, code="server_error", message="Something went wrong on our side; it has been logged."
    )


def _database_unavailable(request: HttpRequest, error: BaseException) -> HttpResponse:
    """A database outage outside a DRF view (a page, a middleware saving the session): a 503
    with Retry-After, JSON under /api/, else a page that reads nothing from the database
    (templates/503.html extends nothing: base.html asks for the signed-in person)."""
    api = is_api_request(request)
    database_outage.database_outage_log(error, "the API" if api else "a page")
    seconds = database_outage.RETRY_AFTER_SECONDS
    if api:
        response: HttpResponse = error_json_response(
            status_code=503, code=database_outage.CODE, message=database_outage.MESSAGE, retry_after=seconds
        )
    else:
        response = HttpResponse(loader.get_template("503.html").render({"retry_after": seconds}), status=503)
    for header, value in database_outage.database_outage_headers().items():
        response[header] = value
    return response


ERROR_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
}
# The error answer replaces the body; what the original said about the request stays
# (Allow for a 405, Retry-After, WWW-Authenticate, the security headers).
_BODY_HEADERS = {"content-type", "content-length"}


class ApiErrorShapeMiddleware:
    """Any error answer under /api/ that is not JSON becomes the JSON error shape."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code < 400 or not is_api_request(request):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        status = HTTPStatus(response.status_code)
        shaped = error_json_response(
            status_code=status.value,
            code=ERROR_CODES.get(status.value, f"http_{status.value}"),
            message=f"{status.phrase}.",
        )
        for header, value in response.items():
            if header.lower() not in _BODY_HEADERS:
                shaped[header] = value
        return shaped
