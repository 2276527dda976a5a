from dataclasses import dataclass


@dataclass
class UpsertCounts:
    """What a bulk write did: rows created, rows changed, rows already as given."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
