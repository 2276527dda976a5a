"""Fixtures shared by the recommender's tests: a small catalog of themes with loyal people."""

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Item
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
