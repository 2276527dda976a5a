"""Parameters of the pages' addresses (?q=, ?k=, ?page=), read strictly.

Anything typed into an address bar reaches these readers, so a malformed value is the caller's
mistake: `InvalidParameterError`, which `InvalidParameterMiddleware` answers with the site's own
400 page (templates/400.html) naming the parameter, whatever DEBUG says. Integers are ASCII
digits only: `str.isdigit()` accepts "²" and full-width digits, which `int()` then refuses or
reads. Text with a NUL is refused here because PostgreSQL cannot compare with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.exceptions import ApplicationError
from core.models import MAX_ID
from core.text import InvalidTextError, text_clean

ASCII_DIGITS = re.compile(r"[0-9]+")


class InvalidParameterError(ApplicationError):
    """A page parameter the caller can fix; the message names it."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter} {problem}")
        self.parameter = parameter


def is_ascii_int(value: str) -> bool:
    """True for "0".."9" only: not "²", not full-width digits, not a sign or spaces."""
    return ASCII_DIGITS.fullmatch(value) is not None


def param_text(request: HttpRequest, name: str, *, max_length: int = 200) -> str:
    """The stripped text of ?name= ("" when absent); a NUL, a lone surrogate or too long is refused."""
    try:
        return text_clean(request.GET.get(name, ""), field=name, max_length=max_length)
    except InvalidTextError as error:
        raise InvalidParameterError(name, error.message.removeprefix(f"{name} ")) from None


def param_int(request: HttpRequest, name: str, *, minimum: int = 1, maximum: int = MAX_ID) -> int | None:
    """?name= as an integer from minimum to maximum, or None when absent or empty."""
    value = request.GET.get(name, "").strip()
    if not value:
        return None
    if not is_ascii_int(value):
        raise InvalidParameterError(name, "must be a whole number written with the digits 0-9")
    number = int(value)
    if not minimum <= number <= maximum:
        raise InvalidParameterError(name, f"must be between {minimum} and {maximum}")
    return number


class InvalidParameterMiddleware:
    """Turns InvalidParameterError raised by a page into the 400 page (the API answers its own)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, InvalidParameterError):
            return None
        return render(request, "400.html", {"message": exception.message}, status=400)
