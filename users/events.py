"""An event as an import hands it over: the input of users.services.activity_bulk_import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class EventRow:
    line: int
    user_id: str
    item_id: str | None
    kind: str
    text: str | None
    rating: float | None
    timestamp: datetime
    file: str = ""
