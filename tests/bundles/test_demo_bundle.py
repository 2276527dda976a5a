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
