"""The API's error shape for answers made outside DRF (middleware, error handlers, the sign-in
lockout), without importing DRF: its settings import the parsers, which import core.api_errors.

    {"error": {"code": "not_found", "message": "...", "retry_after"?: 30}}
"""

from typing import Any

from django.http import HttpRequest, JsonResponse

# Where config/urls.py mounts the API: answers made outside DRF use the JSON shape below it,
# the site's HTML pages elsewhere.
API_PATH_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    return request.path.startswith(API_PATH_PREFIX)


def error_json_response(*, status_code: int, code: str, message: str, **extra: Any) -> JsonResponse:
    """The same shape as core.api_errors.error_response, as a plain Django response."""
    return JsonResponse({"error": {"code": code, "message": message, **extra}}, status=status_code)
