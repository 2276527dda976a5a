"""The simulated purchase bundle (#15 item 6, #14 item 3): seeded, labelled simulated, shaped like
sparse purchase data, and a valid bundle that the product's own import takes whole."""

from collections import Counter, defaultdict

import pytest
from django.core.management import call_command

from bundles.purchase_bundle import MAX_PURCHASES, MIN_PURCHASES, PREFIX, purchase_bundle_generate
from catalog.models import Item
from users.models import Activity, User


def test_the_same_seed_writes_the_same_files_and_another_seed_other_ones(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        call_command(
            "generate_purchase_bundle", "--people", "40", "--items", "60", "--seed", str(seed), "--out", tmp_path / name
        )
    for file in ("items.jsonl", "users.csv", "events.jsonl"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert (tmp_path / "a" / "events.jsonl").read_bytes() != (tmp_path / "c" / "events.jsonl").read_bytes()
    assert "SIMULATED" in (tmp_path / "a" / "SIMULATED.txt").read_text()


def test_people_have_a_handful_of_purchases_over_months_and_items_have_text():
    items, users, events = purchase_bundle_generate(people=300, items=200, seed=0)

    assert len(items) == 200 and len(users) == 300
    assert all(user["user_id"].startswith(PREFIX) and "(simulated)" in user["display_name"] for user in users)
    assert all(item["title"] and item["description"] and item["tags"] and item["category"] for item in items)
    purchases: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if event["kind"] == "purchase":
            purchases[event["user_id"]].append(event["item_id"])
    counts = [len(bought) for bought in purchases.values()]
    assert max(counts) <= MAX_PURCHASES
    assert sum(count >= MIN_PURCHASES for count in counts) >= 0.9 * len(counts)
    assert all(len(set(bought)) == len(bought) for bought in purchases.values())
    kinds = Counter(event["kind"] for event in events)
    assert kinds["purchase"] > kinds["view"] > kinds["add_to_cart"] > 0
    months = {event["timestamp"][:7] for event in events}
    assert len(months) >= 6
    assert [event["timestamp"] for event in events] == sorted(event["timestamp"] for event in events)


def test_a_persons_purchases_stay_mostly_in_the_categories_they_like():
    items, _users, events = purchase_bundle_generate(people=300, items=400, seed=0)
    category = {item["external_id"]: item["category"] for item in items}
    bought: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if event["kind"] == "purchase":
            bought[event["user_id"]].append(category[event["item_id"]])
    # Six categories: by chance the most frequent one would hold about a third of a person's purchases.
    shares = [Counter(rows).most_common(1)[0][1] / len(rows) for rows in bought.values() if len(rows) >= 4]
    assert sum(shares) / len(shares) > 0.7


@pytest.mark.django_db
def test_the_bundle_imports_whole_with_import_bundle(tmp_path):
    call_command("generate_purchase_bundle", "--people", "50", "--items", "80", "--out", tmp_path / "bundle")
    call_command("import_bundle", str(tmp_path / "bundle"))

    _items, users, events = purchase_bundle_generate(people=50, items=80, seed=0)
    assert Item.objects.count() == 80
    assert User.objects.filter(external_id__startswith=PREFIX).count() == len(users) == 50
    assert Activity.objects.count() == len(events)
    assert set(Activity.objects.values_list("kind", flat=True)) == {"purchase", "view", "add_to_cart"}
