"""The one definition of what makes an activity valid: its kind, and what that kind needs.

The API serializer, the activity_record service and the bundle reader all ask activity_problems
or activity_check, and all get one error type (InvalidActivityError), so a rule changes once.
"""

from __future__ import annotations

from core.exceptions import ApplicationError
from users.models import ITEM_KINDS, RATING_MAX, RATING_MIN, TEXT_ONLY_KINDS, ActivityKind

_KINDS = frozenset(ActivityKind.values)


class InvalidActivityError(ApplicationError):
    """An activity breaks a rule; `problems` maps each field at fault to what is wrong with it."""

    def __init__(self, problems: dict[str, str]) -> None:
        # The first problem is the message: a caller showing one line shows the most basic one.
        super().__init__(next(iter(problems.values())))
        self.problems = problems


def _unknown_kind(kind: str) -> str:
    return f"unknown kind {kind!r}; expected one of {', '.join(ActivityKind.values)}"


def activity_kind_check(kind: str) -> None:
    """Raise InvalidActivityError for a kind that does not exist (before anything else is read)."""
    if kind not in _KINDS:
        raise InvalidActivityError({"kind": _unknown_kind(kind)})


def activity_problems(
    *, kind: str, has_item: bool, has_text: bool, rating: float | None, item_field: str = "item"
) -> dict[str, str]:
    """Every rule the activity breaks, {field: message}; empty when it is valid.

    item_field names the item in the message ("item_id" in a bundle, "item" over the API).
    """
    if kind not in _KINDS:
        return {"kind": _unknown_kind(kind)}
    problems = {}
    if kind in ITEM_KINDS and not has_item:
        problems["item"] = f"kind {kind!r} needs an {item_field}"
    if kind in TEXT_ONLY_KINDS and not has_text:
        problems["text"] = f"kind {kind!r} needs a text"
    if rating is not None and not RATING_MIN <= rating <= RATING_MAX:
        problems["rating"] = f"rating must be between {RATING_MIN} and {RATING_MAX}"
    elif kind == ActivityKind.RATING and rating is None:
        problems["rating"] = "kind 'rating' needs a rating"
    return problems


def activity_check(
    *, kind: str, has_item: bool, has_text: bool, rating: float | None, item_field: str = "item"
) -> None:
    """Raise InvalidActivityError when the activity breaks a rule of activity_problems."""
    problems = activity_problems(kind=kind, has_item=has_item, has_text=has_text, rating=rating, item_field=item_field)
    if problems:
        raise InvalidActivityError(problems)
