"""A seeded synthetic purchase bundle: many people, a handful of purchases each (`manage.py
generate_purchase_bundle`). Everything in it is SIMULATED: the ids say so, the users' display
names say so, and the folder gets a SIMULATED.txt saying how it was made.

Why: issue #14 item 3 and #15 item 6 were measured on a purchase dataset of several thousand
people with short histories that is not on the development machines. This generator gives the
same shape (people with 2-8 purchases, a few views and abandoned carts, months of timestamps)
over a catalog with real-looking text, so the evaluation's and the re-ranker's cost and quality
on sparse data can be measured and re-measured by anyone.

The model (every draw from one numpy generator seeded with `seed`, in a fixed order, so the
same arguments write the same files byte for byte):
- THEMES: categories of a few themes each; a theme has its own nouns, uses and tags, so item
  text carries the theme (what the text encoder can see). Each item belongs to one theme, has
  a log-normal appeal (a few items are much more popular) and a position in [0, 1) along its
  theme; its companions are the COMPANIONS items of its theme nearest that position (what goes
  with it: visible to behaviour only, the text does not say it).
- A person likes one or two themes (the second in the first's category half the time). Their
  purchases are a few days to weeks apart: after an item, its companion with NEXT_COMPANION,
  an item of their themes by appeal with NEXT_OWN_THEME, else anything by appeal.
- Before a purchase, now and then a view of another item of the theme (browsing) and now and
  then an abandoned cart; these are interactions too, as a shop would log them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

PREFIX = "simulated-"
HISTORY_START = datetime(2026, 3, 1, tzinfo=UTC)
HISTORY_DAYS = 240
COMPANIONS = 3
NEXT_COMPANION, NEXT_OWN_THEME = 0.4, 0.4
BROWSE_VIEW, ABANDONED_CART = 0.5, 0.15
MIN_PURCHASES, MAX_PURCHASES = 2, 8

# category -> theme -> (nouns, uses, tags). Adjectives, materials and brands are shared.
THEMES: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]] = {
    "Kitchen": {
        "baking": (
            ("loaf tin", "cake pan", "pastry mat", "rolling pin", "muffin tray"),
            ("sourdough loaves", "layer cakes", "weekend baking", "flaky pastry"),
            ("baking", "oven", "bread", "cake"),
        ),
        "coffee": (
            ("pour-over dripper", "burr grinder", "milk frother", "espresso tamper", "cold brew jar"),
            ("a slow morning coffee", "espresso at home", "iced coffee", "single-origin beans"),
            ("coffee", "espresso", "brewing", "beans"),
        ),
        "knives": (
            ("chef's knife", "paring knife", "whetstone", "knife block", "bread knife"),
            ("fine dicing", "slicing tomatoes", "keeping an edge sharp", "prep work"),
            ("knife", "cutlery", "sharpening", "blade"),
        ),
        "asian cooking": (
            ("wok", "bamboo steamer", "rice cooker", "cleaver", "clay pot"),
            ("stir-fries", "steamed dumplings", "fluffy rice", "braised noodles"),
            ("wok", "stir fry", "rice", "dumplings"),
        ),
    },
    "Outdoor": {
        "camping": (
            ("two-person tent", "sleeping bag", "camp stove", "folding chair", "lantern"),
            ("nights under the stars", "a weekend at the lake", "car camping", "cold nights in the hills"),
            ("camping", "tent", "sleeping", "campfire"),
        ),
        "hiking": (
            ("trail pack", "trekking poles", "hiking boots", "hydration bladder", "map case"),
            ("long day hikes", "mountain trails", "rocky ridges", "steep climbs"),
            ("hiking", "trail", "backpack", "mountain"),
        ),
        "rain gear": (
            ("rain jacket", "waterproof trousers", "gaiters", "pack cover", "dry bag"),
            ("walking in heavy rain", "wet autumn days", "staying dry on the hill", "stormy coasts"),
            ("waterproof", "rain", "shell", "storm"),
        ),
        "cycling": (
            ("bike light", "saddle bag", "cycling gloves", "bike lock", "frame pump"),
            ("commuting by bike", "long road rides", "night cycling", "gravel tracks"),
            ("cycling", "bike", "commute", "road"),
        ),
    },
    "Home": {
        "bedding": (
            ("duvet cover", "linen sheet", "feather pillow", "weighted blanket", "mattress topper"),
            ("deep sleep", "cool summer nights", "a cosy bedroom", "lazy Sunday mornings"),
            ("bedding", "sleep", "linen", "pillow"),
        ),
        "lighting": (
            ("floor lamp", "desk lamp", "pendant shade", "smart bulb", "string lights"),
            ("reading at night", "a warm living room", "focused desk work", "evening ambience"),
            ("lighting", "lamp", "bulb", "glow"),
        ),
        "storage": (
            ("storage basket", "shoe rack", "drawer divider", "wall shelf", "vacuum bag"),
            ("a tidy hallway", "small flats", "decluttering", "organised wardrobes"),
            ("storage", "organising", "shelf", "tidy"),
        ),
        "plants": (
            ("plant pot", "watering can", "grow light", "potting mix", "plant stand"),
            ("houseplants", "a green windowsill", "succulents", "herbs on the balcony"),
            ("plants", "garden", "pot", "green"),
        ),
    },
    "Electronics": {
        "audio": (
            ("wireless headphones", "bluetooth speaker", "earbuds", "turntable", "soundbar"),
            ("music on the go", "quiet flights", "vinyl evenings", "film nights"),
            ("audio", "music", "headphones", "sound"),
        ),
        "photography": (
            ("camera strap", "tripod", "lens filter", "memory card", "camera bag"),
            ("landscape photos", "street photography", "travel shots", "long exposures"),
            ("camera", "photo", "lens", "tripod"),
        ),
        "gaming": (
            ("game controller", "gaming mouse", "mechanical keyboard", "headset stand", "capture card"),
            ("long gaming sessions", "competitive shooters", "streaming games", "couch co-op"),
            ("gaming", "controller", "keyboard", "esports"),
        ),
        "charging": (
            ("power bank", "usb-c charger", "charging cable", "wireless charger", "travel adapter"),
            ("phones on the road", "a full battery all day", "charging at the desk", "trips abroad"),
            ("charging", "battery", "usb", "power"),
        ),
    },
    "Books": {
        "crime fiction": (
            ("detective novel", "thriller", "crime anthology", "noir paperback", "mystery box set"),
            ("late-night reading", "whodunits", "twisty plots", "cold cases"),
            ("crime", "mystery", "thriller", "detective"),
        ),
        "cookbooks": (
            ("vegetarian cookbook", "baking book", "regional cookbook", "weeknight recipes", "spice guide"),
            ("weeknight dinners", "cooking for friends", "seasonal vegetables", "learning new cuisines"),
            ("cookbook", "recipes", "cooking", "food"),
        ),
        "science": (
            ("popular science book", "astronomy guide", "history of physics", "biology primer", "maths puzzles"),
            ("curious minds", "understanding the universe", "how life works", "big ideas"),
            ("science", "physics", "space", "nature"),
        ),
        "children": (
            ("picture book", "bedtime stories", "first reader", "activity book", "illustrated atlas"),
            ("bedtime reading", "young readers", "learning letters", "rainy afternoons"),
            ("children", "kids", "stories", "picture book"),
        ),
    },
    "Sports": {
        "running": (
            ("running shoes", "running vest", "gps watch", "reflective jacket", "compression socks"),
            ("marathon training", "early morning runs", "trail running", "interval sessions"),
            ("running", "marathon", "jogging", "race"),
        ),
        "yoga": (
            ("yoga mat", "yoga block", "meditation cushion", "stretch strap", "yoga wheel"),
            ("daily stretching", "calm practice", "flexibility", "mindful mornings"),
            ("yoga", "stretching", "meditation", "mat"),
        ),
        "swimming": (
            ("swim goggles", "swim cap", "kickboard", "swimsuit", "waterproof watch"),
            ("lap swimming", "open-water swims", "training in the pool", "triathlon practice"),
            ("swimming", "pool", "goggles", "water"),
        ),
        "strength": (
            ("kettlebell", "adjustable dumbbells", "resistance bands", "pull-up bar", "lifting belt"),
            ("home workouts", "building strength", "heavy lifting", "short circuits"),
            ("strength", "weights", "gym", "workout"),
        ),
    },
}
ADJECTIVES = ("compact", "classic", "lightweight", "sturdy", "premium", "everyday", "essential", "deluxe", "slim")
MATERIALS = ("recycled fabric", "stainless steel", "oak", "bamboo", "aluminium", "cotton", "ceramic", "silicone")
BRANDS = ("Northwind", "Copperleaf", "Brightwick", "Tallow & Tine", "Harbour", "Lumen", "Fieldcraft", "Kestrel")


@dataclass(frozen=True)
class _Catalog:
    records: list[dict]
    themes: np.ndarray  # theme index of each item
    appeal: np.ndarray
    companions: list[np.ndarray]
    by_theme: list[np.ndarray]
    theme_category: list[int]  # category index of each theme


def _catalog(rng: np.random.Generator, n_items: int) -> _Catalog:
    themes = [(category, theme, words) for category, rows in THEMES.items() for theme, words in rows.items()]
    categories = list(THEMES)
    item_themes = rng.integers(0, len(themes), n_items)
    appeal = rng.lognormal(0.0, 1.0, n_items)
    positions = rng.random(n_items)
    records = []
    for index in range(n_items):
        category, theme, (nouns, uses, tags) = themes[item_themes[index]]
        noun = nouns[rng.integers(len(nouns))]
        adjective, other = rng.choice(len(ADJECTIVES), 2, replace=False)
        brand = BRANDS[rng.integers(len(BRANDS))]
        material = MATERIALS[rng.integers(len(MATERIALS))]
        use = uses[rng.integers(len(uses))]
        chosen_tags = sorted(str(tag) for tag in rng.choice(tags, size=2, replace=False))
        price = round(float(rng.lognormal(3.3, 0.6)), 2)
        records.append(
            {
                "external_id": f"{PREFIX}item-{index + 1:05d}",
                "title": f"{brand} {ADJECTIVES[adjective]} {noun}",
                "description": (
                    f"A {ADJECTIVES[other]} {noun} in {material}, made for {use}. "
                    f"Part of the {brand} {theme} range. (Simulated item.)"
                ),
                "category": category,
                "tags": chosen_tags,
                "price": price,
                "attributes": {"brand": brand, "in_stock": True, "simulated": True},
            }
        )
    by_theme = [np.flatnonzero(item_themes == theme) for theme in range(len(themes))]
    companions = []
    for index in range(n_items):
        members = by_theme[item_themes[index]]
        members = members[members != index]
        nearest = np.argsort(np.abs(positions[members] - positions[index]), kind="stable")[:COMPANIONS]
        companions.append(members[nearest])
    return _Catalog(
        records=records,
        themes=item_themes,
        appeal=appeal,
        companions=companions,
        by_theme=by_theme,
        theme_category=[categories.index(category) for category, _theme, _words in themes],
    )


def _by_appeal(rng: np.random.Generator, pool: np.ndarray, appeal: np.ndarray, taken: set[int]) -> int | None:
    left = np.array([index for index in pool if index not in taken], dtype=np.int64)
    if len(left) == 0:
        return None
    weights = appeal[left]
    return int(left[rng.choice(len(left), p=weights / weights.sum())])


def _event(user_id: str, item: dict, kind: str, moment: datetime) -> dict:
    return {
        "user_id": user_id,
        "item_id": item["external_id"],
        "kind": kind,
        "text": None,
        "rating": None,
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def purchase_bundle_generate(*, people: int, items: int, seed: int = 0) -> tuple[list[dict], list[dict], list[dict]]:
    """(item records, user records, event records), events in time order."""
    if people < 1 or items < 2 * COMPANIONS:
        raise ValueError(f"need at least 1 person and {2 * COMPANIONS} items, not {people} and {items}")
    rng = np.random.default_rng(seed)
    catalog = _catalog(rng, items)
    n_themes = len(catalog.by_theme)
    everything = np.arange(items)
    users, events = [], []
    for number in range(1, people + 1):
        user_id = f"{PREFIX}buyer-{number:05d}"
        users.append({"user_id": user_id, "display_name": f"Simulated buyer {number:05d} (simulated)"})
        first = int(rng.integers(n_themes))
        liked = [first]
        if rng.random() < 0.5:
            same_category = [
                theme
                for theme in range(n_themes)
                if theme != first and catalog.theme_category[theme] == catalog.theme_category[first]
            ]
            liked.append(int(rng.choice(same_category)) if rng.random() < 0.5 else int(rng.integers(n_themes)))
        own = np.unique(np.concatenate([catalog.by_theme[theme] for theme in liked]))
        purchases = int(rng.integers(MIN_PURCHASES, MAX_PURCHASES + 1))
        moment = HISTORY_START + timedelta(days=float(rng.uniform(0, HISTORY_DAYS * 0.6)))
        taken: set[int] = set()
        current = _by_appeal(rng, own, catalog.appeal, taken)
        person_events = []
        while current is not None and len(taken) < purchases:
            taken.add(current)
            item = catalog.records[current]
            if rng.random() < BROWSE_VIEW:
                browsed = _by_appeal(rng, catalog.by_theme[catalog.themes[current]], catalog.appeal, taken)
                if browsed is not None:
                    browse_at = moment - timedelta(minutes=float(rng.uniform(5, 120)))
                    person_events.append(_event(user_id, catalog.records[browsed], "view", browse_at))
            if rng.random() < ABANDONED_CART:
                abandoned = _by_appeal(rng, own, catalog.appeal, taken)
                if abandoned is not None:
                    cart_at = moment - timedelta(minutes=float(rng.uniform(1, 4)))
                    person_events.append(_event(user_id, catalog.records[abandoned], "add_to_cart", cart_at))
            person_events.append(_event(user_id, item, "purchase", moment))
            moment += timedelta(days=float(rng.exponential(12.0)) + 0.5)
            if moment >= HISTORY_START + timedelta(days=HISTORY_DAYS):
                break
            draw = rng.random()
            pool = (
                catalog.companions[current]
                if draw < NEXT_COMPANION
                else own
                if draw < NEXT_COMPANION + NEXT_OWN_THEME
                else everything
            )
            current = _by_appeal(rng, pool, catalog.appeal, taken)
            if current is None:
                current = _by_appeal(rng, own, catalog.appeal, taken)
        events.extend(person_events)
    events.sort(key=lambda event: (event["timestamp"], event["user_id"], event["item_id"]))
    return catalog.records, users, events


def purchase_bundle_write(*, folder: Path | str, people: int, items: int, seed: int = 0) -> dict[str, int]:
    """Write items.jsonl, users.csv, events.jsonl and SIMULATED.txt into `folder`; the counts."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    item_records, user_records, event_records = purchase_bundle_generate(people=people, items=items, seed=seed)
    with open(folder / "items.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in item_records)
    with open(folder / "users.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "display_name"])
        writer.writerows([record["user_id"], record["display_name"]] for record in user_records)
    with open(folder / "events.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in event_records)
    (folder / "SIMULATED.txt").write_text(
        "A SIMULATED purchase bundle: nobody's real behaviour.\n"
        f"Written by `manage.py generate_purchase_bundle --people {people} --items {items} --seed {seed}` "
        "(bundles/purchase_bundle.py describes the model).\n",
        encoding="utf-8",
    )
    return {"items": len(item_records), "users": len(user_records), "events": len(event_records)}
