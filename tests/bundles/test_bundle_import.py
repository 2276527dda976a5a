import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from bundles.exporting import bundle_export
from bundles.importing import bundle_import
from bundles.reading import BundleError, bundle_open
from catalog.models import Item
from users.models import Activity, User

pytestmark = pytest.mark.django_db

ITEMS_CSV = """external_id,title,description,category,tags,price,attributes
boot-1,Alpine boot,"Waterproof leather boot, lined for winter.",Outdoor,hiking|winter,129.00,"{""brand"": ""Ridge""}"
kettle-1,Steel kettle,Boils a litre in two minutes.,Kitchen,tea,39.5,
,No id here,,,,,
help-1,How refunds work,Refunds reach your card in 5 to 10 days.,Billing,refund|money,,
"""

EVENTS_JSONL = [
    {"user_id": "u1", "item_id": "boot-1", "kind": "purchase", "timestamp": "2026-10-01T10:00:00Z"},
    {
        "user_id": "u1",
        "item_id": "boot-1",
        "kind": "review",
        "text": "Dry feet all day.",
        "rating": 5,
        "timestamp": "2026-10-02T10:00:00Z",
    },
    {"user_id": "u2", "item_id": None, "kind": "search", "text": "kettle for tea", "timestamp": 1790000000},
    {"user_id": "u2", "item_id": "kettle-1", "kind": "teleport", "timestamp": 1790000000},
    {"user_id": "u2", "item_id": "kettle-1", "kind": "view", "timestamp": "yesterday"},
    {"user_id": "u2", "item_id": "kettle-1", "kind": "rating", "rating": 9, "timestamp": 1790000000},
    {"user_id": "u2", "item_id": "kettle-1", "kind": "comment", "text": "nul \u0000 byte", "timestamp": 1790000000},
    {"user_id": "u2", "item_id": "nope-404", "kind": "view", "timestamp": 1790000000},
    {"user_id": "u3", "item_id": "help-1", "kind": "view", "timestamp": 1790000100},
]
BROKEN_UTF8_LINE = (
    b'{"user_id": "u3", "item_id": "help-1", "kind": "click", "timestamp": 1790000200, "text": "\xff\xfe"}\n'
)


def _write_bundle(folder: Path, *, huge_text_length: int = 10_001) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.csv").write_text(ITEMS_CSV, encoding="utf-8")
    (folder / "users.csv").write_text("user_id,display_name\nu1,Ana\nu2,Bo\n", encoding="utf-8")
    lines = [json.dumps(event) for event in EVENTS_JSONL]
    huge = {
        "user_id": "u3",
        "item_id": "help-1",
        "kind": "comment",
        "text": "x" * huge_text_length,
        "timestamp": 1790000300,
    }
    with open(folder / "events.jsonl", "wb") as handle:
        handle.write("\n".join(lines).encode() + b"\n")
        handle.write(BROKEN_UTF8_LINE)
        handle.write(b"this is not json\n")
        handle.write(json.dumps(huge).encode() + b"\n")
    return folder


def test_import_creates_items_users_and_events_and_reports_bad_rows_with_lines(tmp_path):
    summary = bundle_import(source=bundle_open(_write_bundle(tmp_path / "bundle")))

    assert Item.objects.count() == 3
    boot = Item.objects.get(external_id="boot-1")
    assert boot.tags == ["hiking", "winter"] and boot.attributes == {"brand": "Ridge"}
    assert str(boot.price) == "129.00" and boot.embedding_status == "pending" and boot.text_hash
    assert set(User.objects.values_list("external_id", flat=True)) == {"u1", "u2", "u3"}
    assert User.objects.get(external_id="u1").display_name == "Ana"
    assert Activity.objects.count() == 4
    review = Activity.objects.get(kind="review")
    assert review.text == "Dry feet all day." and review.rating == 5 and review.embedding_status == "pending"
    assert Activity.objects.get(kind="purchase").embedding_status == "no_text"

    reasons = {(rejection.file, rejection.line): rejection.reason for rejection in summary.rejections}
    assert reasons[("items.csv", 4)] == "external_id is missing"
    assert reasons[("events.jsonl", 4)].startswith("unknown kind 'teleport'")
    assert "neither ISO 8601 nor Unix seconds" in reasons[("events.jsonl", 5)]
    assert "outside 0.5..5.0" in reasons[("events.jsonl", 6)]
    assert reasons[("events.jsonl", 7)] == "text contains a NUL character"
    assert reasons[("events.jsonl", 8)] == "unknown item_id 'nope-404'"
    assert reasons[("events.jsonl", 10)] == "not valid UTF-8"
    assert reasons[("events.jsonl", 11)].startswith("not valid JSON")
    assert reasons[("events.jsonl", 12)] == "text is 10001 characters long; the limit is 10000"
    assert len(reasons) == 9
    events = summary.file("events.jsonl")
    assert (events.created, events.skipped, events.rejected, events.rows) == (4, 0, 8, 12)


def test_importing_the_same_bundle_twice_changes_nothing(tmp_path):
    folder = _write_bundle(tmp_path / "bundle")
    bundle_import(source=bundle_open(folder))
    counts = (Item.objects.count(), User.objects.count(), Activity.objects.count())

    again = bundle_import(source=bundle_open(folder), batch_size=2)

    assert (Item.objects.count(), User.objects.count(), Activity.objects.count()) == counts
    items, users, events = (again.file(name) for name in ("items.csv", "users.csv", "events.jsonl"))
    assert (items.created, items.updated, items.skipped) == (0, 0, 3)
    assert (users.created, users.updated, users.skipped) == (0, 0, 2)
    assert (events.created, events.skipped) == (0, 4)


def test_changed_item_text_is_updated_and_marked_for_embedding(tmp_path):
    folder = _write_bundle(tmp_path / "bundle")
    bundle_import(source=bundle_open(folder))
    Item.objects.update(embedding_status="ok")
    (folder / "items.csv").write_text(ITEMS_CSV.replace("Boils a litre", "Boils two litres"), encoding="utf-8")

    summary = bundle_import(source=bundle_open(folder))

    assert (summary.file("items.csv").updated, summary.file("items.csv").skipped) == (1, 2)
    assert Item.objects.get(external_id="kettle-1").embedding_status == "pending"
    assert Item.objects.get(external_id="boot-1").embedding_status == "ok"


def test_a_repeated_id_within_one_file_is_rejected(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "items.jsonl").write_text(
        '{"external_id": "a", "title": "First"}\n{"external_id": "a", "title": "Second"}\n', encoding="utf-8"
    )

    summary = bundle_import(source=bundle_open(folder))

    assert Item.objects.get().title == "First"
    assert [str(rejection) for rejection in summary.rejections] == ["items.jsonl:2: duplicate of line 1"]


def test_broken_utf8_in_csv_is_reported_and_the_rest_imported(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "items.csv").write_bytes(b"external_id,title\na,Fine\nb,Bad \xff byte\nc,Also fine\n")

    summary = bundle_import(source=bundle_open(folder))

    assert sorted(Item.objects.values_list("external_id", flat=True)) == ["a", "c"]
    assert [str(rejection) for rejection in summary.rejections] == ["items.csv:3: not valid UTF-8"]


def test_export_then_import_into_an_empty_database_gives_the_same_rows(tmp_path):
    bundle_import(source=bundle_open(_write_bundle(tmp_path / "bundle")))
    before = {
        "items": sorted(Item.objects.values_list("external_id", "title", "tags", "price", "attributes")),
        "events": sorted(
            Activity.objects.values_list(
                "user__external_id", "item__external_id", "kind", "text", "rating", "created_at"
            )
        ),
    }
    counts = bundle_export(folder=tmp_path / "out")
    Activity.objects.all().delete()
    Item.objects.all().delete()
    User.objects.all().delete()

    summary = bundle_import(source=bundle_open(tmp_path / "out"))

    assert counts == {"items": 3, "users": 3, "events": 4}
    assert summary.rejections == []
    assert sorted(Item.objects.values_list("external_id", "title", "tags", "price", "attributes")) == before["items"]
    assert (
        sorted(
            Activity.objects.values_list(
                "user__external_id", "item__external_id", "kind", "text", "rating", "created_at"
            )
        )
        == before["events"]
    )


def test_command_prints_a_summary_and_the_rejected_rows(tmp_path, capsys):
    folder = _write_bundle(tmp_path / "bundle")
    rejections_file = tmp_path / "rejected.txt"

    call_command("import_bundle", str(folder), "--rejections-file", str(rejections_file))

    captured = capsys.readouterr()
    assert "events.jsonl                     4         0         0         8" in captured.out
    assert "rejected events.jsonl:8: unknown item_id 'nope-404'" in captured.err
    assert len(rejections_file.read_text().splitlines()) == 9


def test_missing_or_empty_bundle_folders_are_refused_clearly(tmp_path):
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("import_bundle", str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="has neither items"):
        bundle_open(tmp_path / "empty")
