"""Reading dataset bundles: the one import/export format (see README "Dataset bundles").

A bundle is a folder with items.csv or items.jsonl, events.csv or events.jsonl and optionally
users.csv. Readers yield one validated row or one Rejection per record, never raise for bad
data, so an import can report every bad row with its file and line and still take the rest.
An item record is checked by the item's own rules (catalog.item_fields), an event by the
activity rules (users.activity_rules); this module adds the files, users and timestamps.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from catalog.item_fields import MAX_ID_LENGTH, ItemRow, parse_item
from core.exceptions import ApplicationError
from core.records import Rejection, RowError, record_optional_text, record_required_text
from core.text import InvalidTextError, text_max_length
from users.activity_rules import InvalidActivityError, activity_check, activity_kind_check
from users.events import EventRow
from users.models import RATING_MAX, RATING_MIN

# Unix seconds outside these years are far more likely a unit mistake (milliseconds) than data.
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC).timestamp()
LATEST_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
# What a bad record raises while it is parsed; each becomes one Rejection.
ROW_ERRORS = (RowError, InvalidTextError, InvalidActivityError)


class BundleError(ApplicationError):
    """The bundle as a whole cannot be read (missing folder or file)."""


@dataclass
class UserRow:
    line: int
    user_id: str
    display_name: str = ""


@dataclass
class BundleSource:
    """Where the rows of one bundle come from, file by file."""

    items_file: str | None
    users_file: str | None
    events_file: str | None
    items: Callable[[], Iterable[ItemRow | Rejection]]
    users: Callable[[], Iterable[UserRow | Rejection]]
    events: Callable[[], Iterable[EventRow | Rejection]]


# --- records: CSV and JSONL give the same dicts --------------------------------------------


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    # surrogateescape keeps undecodable bytes as lone surrogates, so one broken line is
    # reported instead of the whole file failing to decode.
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            return
        try:
            for record in reader:
                line = reader.line_num
                if None in record:
                    yield line, None, "more fields than the header has"
                    continue
                if any(_has_undecodable(value) for value in record.values() if value):
                    yield line, None, "not valid UTF-8"
                    continue
                yield line, record, None
        except csv.Error as error:
            yield reader.line_num, None, f"CSV error: {error}"


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield line_number, None, "not valid UTF-8"
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                yield line_number, None, f"not valid JSON: {error.msg}"
                continue
            if not isinstance(record, dict):
                yield line_number, None, "a line must be a JSON object"
                continue
            yield line_number, record, None


def _has_undecodable(value: str) -> bool:
    return any("\udc80" <= character <= "\udcff" for character in value)


def _records(path: Path):
    return _jsonl_records(path) if path.suffix == ".jsonl" else _csv_records(path)


def _rows(path: Path, parse: Callable[[int, dict[str, Any], bool], Any]) -> Iterator[Any]:
    is_csv = path.suffix != ".jsonl"
    for line, record, problem in _records(path):
        if problem is not None:
            yield Rejection(path.name, line, problem)
            continue
        try:
            row = parse(line, record, is_csv)
        except ROW_ERRORS as error:
            yield Rejection(path.name, line, str(error))
            continue
        if isinstance(row, EventRow):
            row.file = path.name
        yield row


# --- field parsers ------------------------------------------------------------------------


def _rating(record: dict) -> float | None:
    value = record.get("rating")
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RowError("rating must be a number")
    try:
        rating = float(value)
    except (TypeError, ValueError):
        raise RowError(f"rating must be a number, got {str(value)[:40]!r}") from None
    if math.isnan(rating) or not RATING_MIN <= rating <= RATING_MAX:
        raise RowError(f"rating {value} is outside {RATING_MIN}..{RATING_MAX}")
    return rating


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 (a time without zone is UTC) or Unix seconds."""
    if value in (None, ""):
        raise RowError("timestamp is missing")
    if isinstance(value, bool):
        raise RowError("timestamp must be ISO 8601 or Unix seconds")
    if isinstance(value, str) and not _looks_numeric(value):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise RowError(f"timestamp {value[:40]!r} is neither ISO 8601 nor Unix seconds") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise RowError("timestamp must be ISO 8601 or Unix seconds") from None
    if not EARLIEST_TIMESTAMP <= seconds < LATEST_TIMESTAMP:
        raise RowError(f"timestamp {value} is not Unix seconds between 1970 and 2100")
    return datetime.fromtimestamp(seconds, tz=UTC)


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


# --- row parsers --------------------------------------------------------------------------


def parse_user(line: int, record: dict, is_csv: bool) -> UserRow:
    return UserRow(
        line=line,
        user_id=record_required_text(record, "user_id", max_length=MAX_ID_LENGTH),
        display_name=record_optional_text(record, "display_name", max_length=200),
    )


def parse_event(line: int, record: dict, is_csv: bool) -> EventRow:
    user_id = record_required_text(record, "user_id", max_length=MAX_ID_LENGTH)
    item_id = record_optional_text(record, "item_id", max_length=MAX_ID_LENGTH) or None
    kind = record_required_text(record, "kind", max_length=32).lower()
    activity_kind_check(kind)
    text = record_optional_text(record, "text", max_length=text_max_length()) or None
    rating = _rating(record)
    activity_check(
        kind=kind, has_item=item_id is not None, has_text=text is not None, rating=rating, item_field="item_id"
    )
    return EventRow(
        line=line,
        user_id=user_id,
        item_id=item_id,
        kind=kind,
        text=text,
        rating=rating,
        timestamp=parse_timestamp(record.get("timestamp")),
    )


# --- opening a bundle folder --------------------------------------------------------------


def _find(folder: Path, stem: str, *, required: bool, suffixes=(".jsonl", ".csv")) -> Path | None:
    found = [folder / f"{stem}{suffix}" for suffix in suffixes if (folder / f"{stem}{suffix}").is_file()]
    if len(found) > 1:
        raise BundleError(f"{folder} has both {found[0].name} and {found[1].name}; keep one")
    if not found and required:
        names = " or ".join(f"{stem}{suffix}" for suffix in suffixes)
        raise BundleError(f"{folder} has no {names}")
    return found[0] if found else None


def bundle_open(folder: Path | str) -> BundleSource:
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a folder")
    items = _find(folder, "items", required=False)
    events = _find(folder, "events", required=False)
    users = _find(folder, "users", required=False, suffixes=(".csv",))
    if items is None and events is None:
        raise BundleError(f"{folder} has neither items (.csv/.jsonl) nor events (.csv/.jsonl)")
    return BundleSource(
        items_file=items.name if items else None,
        users_file=users.name if users else None,
        events_file=events.name if events else None,
        items=lambda: _rows(items, parse_item) if items else iter(()),
        users=lambda: _rows(users, parse_user) if users else iter(()),
        events=lambda: _rows(events, parse_event) if events else iter(()),
    )
