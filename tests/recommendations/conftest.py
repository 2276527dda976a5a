"""Fixtures shared by the recommender's tests: a small catalog of themes with loyal people."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from catalog.models import Item
from recommendations.ranking.active import reset_active_ranker
from recommendations.retrieval.behaviour_build import behaviour_model_rebuild
from recommendations.vectors import embedding
from tests.factories import UserFactory
from tests.worlds import module_world
from users.models import Activity

THEMES = {
    "hiking": ("Outdoor", "boots, tents and trail maps for mountain hikes"),
    "tea": ("Kitchen", "loose-leaf green tea, teapots and kettles"),
    "jazz": ("Music", "jazz records, saxophone solos and live club recordings"),
    "baking": ("Kitchen", "sourdough bread, flour and baking tins"),
}


@pytest.fixture
def fresh_ranker_cache():
    """The process's cached active ranker forgotten before and after a test that trains or activates one."""
    reset_active_ranker()
    yield
    reset_active_ranker()


def themes_world_build() -> dict:
    """Four themes of eight items; 32 people, each loyal to one theme, choosing its items in a
    fixed order (so what someone chose early predicts what they choose next)."""
    items = {}
    for theme, (category, words) in THEMES.items():
        for number in range(8):
            items[(theme, number)] = Item.objects.create(
                external_id=f"{theme}-{number}",
                title=f"{theme.title()} item {number}",
                category=category,
                tags=[theme],
                description=f"Number {number} of our {words}.",
            )
    start = timezone.now() - timedelta(days=200)
    people = []
    for index in range(32):
        theme = list(THEMES)[index % 4]
        person = UserFactory.create(username=f"person{index}")
        people.append(person)
        offset = index // 4  # people of a theme start at different items: varied histories
        for step in range(6):
            Activity.objects.create(
                user=person,
                item=items[(theme, (offset + step) % 8)],
                kind="purchase",
                created_at=start + timedelta(days=index + 3 * step),
            )
    embedding.embeddings_process_pending()
    behaviour_model_rebuild()
    return {"items": items, "people": people, "start": start}


# Built once per module (1 s each time, 28 tests use it); each test runs in a savepoint inside.
_themes_world_rows, _themes_world_copy = module_world(themes_world_build)


@pytest.fixture
def themes_world(_themes_world_rows, db):
    return _themes_world_copy(_themes_world_rows)


# What people write about four series of items whose catalog text says nothing of it (their
# titles are model numbers): the frozen encoder cannot tell which series a question is about;
# a model trained on the earlier phrases can place the later ones, which mean the same things.
COMMUNITY_WORDS = {
    "A": (
        "mountain hiking",
        "trail boots",
        "camping tent",
        "backpacking gear",
        "summit climb",
        "forest trek",
        "waterproof jacket for hikes",
        "sleeping bag",
        "alpine trail",
        "hiking poles",
        "campfire nights",
        "rock scrambling",
        "wilderness walk",
        "trekking in the hills",
        "outdoor adventure",
        "national park trails",
        "map and compass",
        "long distance walking",
    ),
    "B": (
        "green tea",
        "loose leaf tea",
        "teapot",
        "herbal infusion",
        "oolong brew",
        "matcha whisk",
        "earl grey",
        "chamomile before bed",
        "tea ceremony",
        "jasmine tea",
        "kettle for tea",
        "steeping leaves",
        "afternoon tea",
        "black tea with milk",
        "rooibos",
        "tea cups",
        "chai spices",
        "white tea",
    ),
    "C": (
        "jazz records",
        "saxophone solo",
        "bebop",
        "swing band",
        "live jazz club",
        "trumpet improvisation",
        "double bass",
        "smooth jazz",
        "big band music",
        "jazz piano trio",
        "vinyl jazz album",
        "cool jazz",
        "jazz vocals",
        "drum brushes",
        "free jazz",
        "jazz standards",
        "late night jazz",
        "scat singing",
    ),
    "D": (
        "sourdough bread",
        "baking tins",
        "flour for cakes",
        "pastry dough",
        "croissants",
        "rolling pin",
        "cake decorating",
        "bread proofing basket",
        "cookie cutters",
        "muffin tray",
        "whole wheat loaf",
        "yeast starter",
        "pie crust",
        "oven thermometer",
        "cupcakes",
        "baguette",
        "cinnamon rolls",
        "banana bread",
    ),
}
# Series E-H are never written about: items no question should find.
SERIES = ("A", "B", "C", "D", "E", "F", "G", "H")
ITEMS_PER_SERIES = 8
ITEMS_PER_PHRASE = 5


def community_words_world_build() -> dict:
    """64 items in 8 series; 72 phrases tagged on 5 items of their series each (360 tag events,
    written round-robin over the series, a day apart), by 12 people."""
    items = {
        (series, number): Item.objects.create(
            external_id=f"model-{series}-{number}", title=f"Model {series}-{number}", category=f"Series {series}"
        )
        for series in SERIES
        for number in range(ITEMS_PER_SERIES)
    }
    people = [UserFactory.create(username=f"writer{index}") for index in range(12)]
    start = timezone.now() - timedelta(days=400)
    rng = np.random.default_rng(0)
    moment = 0
    for position in range(len(COMMUNITY_WORDS["A"])):
        for series, phrases in COMMUNITY_WORDS.items():
            for number in sorted(rng.choice(ITEMS_PER_SERIES, size=ITEMS_PER_PHRASE, replace=False)):
                Activity.objects.create(
                    user=people[moment % len(people)],
                    item=items[(series, int(number))],
                    kind="tag",
                    text=phrases[position],
                    created_at=start + timedelta(days=moment // 20, minutes=moment),
                )
                moment += 1
    embedding.embeddings_process_pending()
    return {"items": items, "people": people}
