"""The sign-in lockout: django-axes counts every failed authenticate() (the sign-in page, the
admin's sign-in and the staff's own password change (users/admin_site.py), the API token
endpoint, the account-deletion password) with its username and
client address, and refuses further tries, even with the right password, at either limit:

- per account: LOGIN_FAILURES_PER_ACCOUNT (AXES_FAILURE_LIMIT) wrong passwords for one username,
  from any address (slow guessing of one account from many addresses);
- per address: LOGIN_FAILURES_PER_ADDRESS wrong passwords from one client address, whatever the
  usernames (one password tried on many accounts).

Counts cover the last AXES_COOLOFF_TIME; the lock ends that long after the last counted failure.
Staff unlock earlier by deleting the "Access attempts" rows in the admin. The answer is a 429 with
Retry-After: the site's page, or the API's JSON error shape under /api/.
"""

from __future__ import annotations

import math
from datetime import datetime

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from core.error_shape import error_json_response, is_api_request
from core.throttling import throttled_page

LOCKED_OUT_MESSAGE = "Too many failed sign-ins for this account or from this address."


def _recent_attempts(request: HttpRequest, credentials: dict | None) -> tuple[QuerySet, QuerySet]:
    """This username's and this address's failures within the cool-off (axes' own attempt rows)."""
    cool_off = get_cool_off(request)
    attempt_time: datetime = getattr(request, "axes_attempt_time", None) or timezone.now()
    recent = AccessAttempt.objects.all()
    if cool_off is not None:
        recent = recent.filter(attempt_time__gte=attempt_time - cool_off)
    username = get_client_username(request, credentials)
    by_account = recent.filter(username=username) if username else recent.none()
    by_address = recent.filter(ip_address=getattr(request, "axes_ip_address", None))
    return by_account, by_address


def _failures(attempts: QuerySet) -> int:
    return attempts.aggregate(failures=Sum("failures_since_start"))["failures"] or 0


class LoginGuardHandler(AxesDatabaseHandler):
    """Axes' database handler with a limit of its own for the address.

    Axes compares one count with AXES_FAILURE_LIMIT (the account's limit); the address's count is
    scaled to that limit, so it reaches it exactly when it reaches LOGIN_FAILURES_PER_ADDRESS.
    """

    def get_failures(self, request, credentials: dict | None = None) -> int:
        by_account, by_address = _recent_attempts(request, credentials)
        account_limit: int = settings.AXES_FAILURE_LIMIT
        address_limit: int = settings.LOGIN_FAILURES_PER_ADDRESS
        return max(_failures(by_account), _failures(by_address) * account_limit // address_limit)


def seconds_until_unlocked(request: HttpRequest, credentials: dict | None) -> int:
    """When the lock ends at the latest: a cool-off after the latest failure that counts."""
    cool_off = get_cool_off(request)
    if cool_off is None:
        return 0
    by_account, by_address = _recent_attempts(request, credentials)
    latest = (by_account | by_address).aggregate(latest=Max("attempt_time"))["latest"]
    if latest is None:
        return 1
    return max(1, math.ceil((latest + cool_off - timezone.now()).total_seconds()))


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: 429 with Retry-After, as JSON under /api/, else the site's page."""
    retry_after = seconds_until_unlocked(request, credentials)
    message = f"{LOCKED_OUT_MESSAGE} Try again in {retry_after} seconds."
    if is_api_request(request):
        response: HttpResponse = error_json_response(
            status_code=429, code="locked_out", message=message, retry_after=retry_after
        )
        response["Retry-After"] = str(retry_after)
        return response
    return throttled_page(request, retry_after, message=LOCKED_OUT_MESSAGE)
