"""Write the database out as a dataset bundle (items.jsonl, users.csv, events.jsonl).

Importing the written bundle into an empty database gives the same items, users and events.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from catalog.models import Item
from users.models import Activity, User

# Rows fetched per round trip while streaming; keeps memory flat on large tables.
CHUNK_SIZE = 5_000


def _user_key(external_id: str | None, username: str) -> str:
    return external_id or username


def bundle_export(*, folder: Path | str) -> dict[str, int]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    counts = {"items": 0, "users": 0, "events": 0}

    with open(folder / "items.jsonl", "w", encoding="utf-8") as handle:
        rows = Item.objects.order_by("id").values_list(
            "external_id", "title", "description", "category", "tags", "price", "attributes"
        )
        for external_id, title, description, category, tags, price, attributes in rows.iterator(CHUNK_SIZE):
            record = {
                "external_id": external_id,
                "title": title,
                "description": description,
                "category": category,
                "tags": tags,
                "price": str(price) if price is not None else None,
                "attributes": attributes,
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            counts["items"] += 1

    with open(folder / "users.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "display_name"])
        for user_external_id, username, display_name in (
            User.objects.order_by("id").values_list("external_id", "username", "display_name").iterator(CHUNK_SIZE)
        ):
            writer.writerow([_user_key(user_external_id, username), display_name])
            counts["users"] += 1

    with open(folder / "events.jsonl", "w", encoding="utf-8") as handle:
        events = Activity.objects.order_by("created_at", "id").values_list(
            "user__external_id", "user__username", "item__external_id", "kind", "text", "rating", "created_at"
        )
        for user_external_id, username, item_id, kind, text, rating, created_at in events.iterator(CHUNK_SIZE):
            record = {
                "user_id": _user_key(user_external_id, username),
                "item_id": item_id,
                "kind": kind,
                "text": text,
                "rating": rating,
                "timestamp": created_at.isoformat(),
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            counts["events"] += 1
    return counts
