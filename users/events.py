"""An event as an import hands it over: the input of users.services.activity_bulk_import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from users.models import INTERACTION_KINDS


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

    @property
    def is_interaction(self) -> bool:
        """An interaction with an item as the offline evaluation splits, predicts and scores it
        (users.models.INTERACTION_KINDS); tags, comments and pure-text events are not."""
        return self.interaction_item() is not None

    def interaction_item(self) -> str | None:
        """The item of an interaction; None for every other event."""
        return self.item_id if self.item_id and self.kind in INTERACTION_KINDS else None
