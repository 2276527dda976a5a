"""An item's fields as they arrive from outside: their limits, and one record checked into an ItemRow.

The item API and the bundle reader (bundles.reading) clean an item record with the same
function, so an item is valid or not whichever way it arrives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from core.records import RowError, record_optional_text, record_required_text
from core.text import text_clean, text_max_length

MAX_ID_LENGTH = 150
MAX_TITLE_LENGTH = 500
MAX_CATEGORY_LENGTH = 200
MAX_TAG_LENGTH = 100
MAX_TAGS = 100
MAX_PRICE = Decimal("9999999999.99")


@dataclass
class ItemRow:
    line: int
    external_id: str
    title: str
    description: str = ""
    category: str = ""
    tags: list[str] = field(default_factory=list)
    price: Decimal | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def _tags(record: dict, is_csv: bool) -> list[str]:
    value = record.get("tags")
    if value in (None, ""):
        return []
    if is_csv and isinstance(value, str):
        value = value.split("|")
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise RowError("tags must be a list of text ('|'-separated in CSV)")
    tags = []
    for tag in value:
        cleaned = text_clean(tag, field="tag", max_length=MAX_TAG_LENGTH)
        if cleaned and cleaned not in tags:
            tags.append(cleaned)
    if len(tags) > MAX_TAGS:
        raise RowError(f"{len(tags)} tags; the limit is {MAX_TAGS}")
    return tags


def _price(record: dict) -> Decimal | None:
    value = record.get("price")
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise RowError("price must be a number")
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise RowError(f"price must be a number, got {str(value)[:40]!r}") from None
    if not price.is_finite() or price < 0 or price > MAX_PRICE:
        raise RowError(f"price must be between 0 and {MAX_PRICE}")
    return price.quantize(Decimal("0.01"))


def _attributes(record: dict, is_csv: bool) -> dict[str, Any]:
    value = record.get("attributes")
    if value in (None, ""):
        return {}
    if is_csv and isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError("attributes must be a JSON object") from None
    if not isinstance(value, dict):
        raise RowError("attributes must be a JSON object")
    if "\\u0000" in json.dumps(value):
        raise RowError("attributes contain a NUL character")
    return value


def parse_item(line: int, record: dict, is_csv: bool) -> ItemRow:
    """One item record checked (RowError or core.text.InvalidTextError name what is wrong)."""
    return ItemRow(
        line=line,
        external_id=record_required_text(record, "external_id", max_length=MAX_ID_LENGTH),
        title=record_required_text(record, "title", max_length=MAX_TITLE_LENGTH),
        description=record_optional_text(record, "description", max_length=text_max_length()),
        category=record_optional_text(record, "category", max_length=MAX_CATEGORY_LENGTH),
        tags=_tags(record, is_csv),
        price=_price(record),
        attributes=_attributes(record, is_csv),
    )
