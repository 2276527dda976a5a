"""Content-Security-Policy on HTML pages: scripts only from this app, so even a markup injection
that slipped past template escaping could not run code. (Django 5.2 has no CSP of its own.)

The policy and its exemptions are settings: CONTENT_SECURITY_POLICY (empty = off) and
CONTENT_SECURITY_POLICY_EXEMPT (path prefixes of pages that need inline scripts, such as the API's
Swagger UI and Redoc pages from drf-spectacular).
"""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", "")
        if (
            policy
            and HEADER not in response
            and response.get("Content-Type", "").startswith("text/html")
            and not request.path.startswith(tuple(getattr(settings, "CONTENT_SECURITY_POLICY_EXEMPT", ())))
        ):
            response[HEADER] = policy
        return response
