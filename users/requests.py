"""The signed-in person of a request, typed as a User.

Django and DRF type `request.user` as `User | AnonymousUser`; behind `login_required` or
`IsAuthenticated` it is always a User, and this says so once instead of a cast in every view.
"""

from typing import cast

from django.http import HttpRequest
from rest_framework.request import Request

from users.models import User


def request_user(request: HttpRequest | Request) -> User:
    """request.user, for views that only run for a signed-in person (no check: the view's
    decorator or permission class has made it)."""
    return cast(User, request.user)
