import re
from pathlib import Path

import pytest

from bundles.importing import bundle_import
from bundles.reading import bundle_open
from catalog.models import Item
from users.models import Activity, User

DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "demo_bundle"
CHINESE = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.django_db
def test_demo_bundle_imports_without_a_single_rejection():
    summary = bundle_import(source=bundle_open(DEMO_BUNDLE))

    assert summary.rejections == []
    assert Item.objects.count() >= 300
    prefixes = {external_id.split("-")[0] for external_id in Item.objects.values_list("external_id", flat=True)}
    assert prefixes == {"shop", "video", "help"}
    assert sum(bool(CHINESE.search(title)) for title in Item.objects.values_list("title", flat=True)) >= 20
    assert User.objects.count() == 40
    text_kinds = set(Activity.objects.exclude(text=None).values_list("kind", flat=True))
    assert {"review", "search", "chat"} <= text_kinds


BILINGUAL_QUERIES = DEMO_BUNDLE / "bilingual_queries.jsonl"
PAIRS = ("zh-zh", "zh-en", "en-zh", "en-en")


def test_bilingual_query_set_covers_every_pair_kind_and_split_over_real_items():
    import json
    from collections import Counter

    items = {}
    for line in (DEMO_BUNDLE / "items.jsonl").read_text().splitlines():
        row = json.loads(line)
        items[row["external_id"]] = bool(CHINESE.search(row["title"]))
    queries = [json.loads(line) for line in BILINGUAL_QUERIES.read_text().splitlines()]

    assert len(queries) >= 80
    assert len({query["query"] for query in queries}) == len(queries)
    for query in queries:
        assert set(query) == {"query", "pair", "kind", "relevant", "split"}
        assert query["pair"] in PAIRS and query["kind"] in ("product", "service", "none")
        assert query["split"] in ("calibration", "test")
        assert bool(CHINESE.search(query["query"])) == query["pair"].startswith("zh"), query["query"]
        assert (query["kind"] == "none") == (query["relevant"] == []), query["query"]
        assert set(query["relevant"]) <= set(items), query["query"]
        if query["pair"] in ("zh-en", "en-zh"):
            # A cross-lingual query is answered only by items in the other language.
            wanted_chinese = query["pair"] == "en-zh"
            assert all(items[item] == wanted_chinese for item in query["relevant"]), query["query"]
    answerable = Counter(query["pair"] for query in queries if query["kind"] != "none")
    assert all(answerable[pair] >= 15 for pair in PAIRS), answerable
    assert sum(query["kind"] == "none" for query in queries) >= 16
    assert {query["kind"] for query in queries} == {"product", "service", "none"}
    groups = Counter((query["pair"], query["kind"], query["split"]) for query in queries)
    for pair, kind, _split in groups:
        calibration, test = groups[(pair, kind, "calibration")], groups[(pair, kind, "test")]
        assert abs(calibration - test) <= 1, (pair, kind, calibration, test)
