"""Records from outside (a bundle file, an API body): one bad record is an error naming why.

Shared by the item's fields (catalog), the event rules (users) and the bundle reader above
them, so each can check a record without importing the bundle format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.text import text_clean


class RowError(ValueError):
    """One record is invalid; the message says why."""


@dataclass(frozen=True)
class Rejection:
    """A record that was not taken: where it was (file and line) and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


def record_optional_text(record: dict[str, Any], name: str, *, max_length: int) -> str:
    """The field as clean text, "" when absent; a number is taken as its text (CSV and JSON agree)."""
    value = record.get(name)
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise RowError(f"{name} must be text")
    return text_clean(value, field=name, max_length=max_length)


def record_required_text(record: dict[str, Any], name: str, *, max_length: int) -> str:
    value = record_optional_text(record, name, max_length=max_length)
    if not value:
        raise RowError(f"{name} is missing")
    return value
