from datetime import UTC, datetime

from users.events import EventRow


def _event(*, item_id: str | None, kind: str) -> EventRow:
    return EventRow(
        line=1,
        user_id="u1",
        item_id=item_id,
        kind=kind,
        text=None,
        rating=None,
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_an_event_is_an_interaction_only_with_an_item_and_an_interaction_kind():
    assert _event(item_id="7", kind="rating").interaction_item() == "7"
    assert _event(item_id="7", kind="purchase").is_interaction
    # Tags and comments are the person's words about an item, never an item to predict; a search names no item.
    assert _event(item_id="7", kind="tag").interaction_item() is None
    assert not _event(item_id="7", kind="comment").is_interaction
    assert not _event(item_id=None, kind="search").is_interaction
    assert not _event(item_id="", kind="rating").is_interaction
