"""Candidate sources and the recommendation service on a small catalog with known answers.

Real PostgreSQL, real pgvector, the real encoder (tasks run in-process), the real behaviour model.
"""

from datetime import timedelta

import numpy as np
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.models import Item, ItemVector
from core.exceptions import ApplicationError
from recommendations.ml.encoder import get_encoder
from recommendations.models import (
    BehaviourModel,
    ItemNeighbour,
    Recommendation,
    RecommendationContext,
    RecommendedItem,
)
from recommendations.retrieval.behaviour import behaviour_candidates
from recommendations.retrieval.behaviour_build import behaviour_model_rebuild
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.popular import fresh_candidates, popular_candidates
from recommendations.retrieval.semantic import semantic_candidates
from recommendations.serving.answers import Result, answer_log
from recommendations.serving.service import recommend_for_text, recommend_for_user, similar_items
from recommendations.vectors import embedding
from tests.factories import UserFactory
from users.models import Activity

pytestmark = pytest.mark.django_db

CATALOG = {
    "boots": ("Alpine hiking boots", "Outdoor", "Waterproof leather boots for mountain trails."),
    "tent": ("Two-person backpacking tent", "Outdoor", "A light tent for camping trips in the hills."),
    "stove": ("Camping gas stove", "Outdoor", "Boils water at the campsite in three minutes."),
    "kettle": ("Gooseneck tea kettle", "Kitchen", "Pours slowly for green tea and pour-over coffee."),
    "teapot": ("Cast iron teapot", "Kitchen", "Keeps loose-leaf tea hot for an hour."),
    "retired": ("Old hiking boots", "Outdoor", "Discontinued model of mountain boots."),
}
# (person, items they bought): hikers buy boots + tent (+ stove), tea people kettle + teapot.
PURCHASES = {
    "hiker1": ["boots", "tent", "stove"],
    "hiker2": ["boots", "tent"],
    "hiker3": ["boots", "tent", "stove"],
    "tea1": ["kettle", "teapot"],
    "tea2": ["kettle", "teapot"],
    "new-hiker": ["boots"],
}


@pytest.fixture
def world():
    items = {
        key: Item.objects.create(external_id=key, title=title, category=category, description=description)
        for key, (title, category, description) in CATALOG.items()
    }
    people = {name: UserFactory.create(username=name) for name in PURCHASES}
    when = timezone.now() - timedelta(days=30)
    for name, bought in PURCHASES.items():
        for offset, key in enumerate(bought):
            Activity.objects.create(
                user=people[name], item=items[key], kind="purchase", created_at=when + timedelta(hours=offset)
            )
    Item.objects.filter(external_id="retired").update(is_active=False)
    Item.objects.filter(external_id__in=["teapot", "retired"]).update(created_at=when)
    type(people["hiker1"]).objects.update(interest_stale=True)
    embedding.embeddings_process_pending()
    behaviour_model_rebuild()
    return {"items": items, "people": people}


def _titles(answer) -> list[str]:
    return [result.item.external_id for result in answer.results]


def test_behaviour_source_links_items_bought_together(world):
    items = world["items"]

    ranked = behaviour_candidates(history={items["boots"].id: 1.0}, filters=ItemFilters(), k=5)

    assert [item_id for item_id, _score in ranked][:2] == [items["tent"].id, items["stove"].id]
    assert items["kettle"].id not in dict(ranked)
    assert BehaviourModel.objects.get(is_active=True).algorithm == "ease"


def test_popular_source_counts_distinct_people(world):
    ranked = popular_candidates(filters=ItemFilters(), k=3)

    # boots: 4 people, tent: 3, then stove and kettle with 2 each (ties go to the older id).
    assert [Item.objects.get(id=item_id).external_id for item_id, _score in ranked] == ["boots", "tent", "stove"]
    assert [score for _item_id, score in ranked] == [4.0, 3.0, 2.0]


def test_fresh_source_lists_new_active_items_only(world):
    ranked = fresh_candidates(filters=ItemFilters(), k=10, days=7)

    assert {Item.objects.get(id=item_id).external_id for item_id, _score in ranked} == {
        "boots",
        "tent",
        "stove",
        "kettle",
    }


def test_semantic_source_finds_items_by_meaning_and_respects_filters(world):
    query = get_encoder().encode(["gear for a camping trip"], kind="query").vectors[0]

    ranked = semantic_candidates(vectors=[query], model_name="all-MiniLM-L6-v2", filters=ItemFilters(), k=3)
    kitchen = semantic_candidates(
        vectors=[query], model_name="all-MiniLM-L6-v2", filters=ItemFilters(categories=("Kitchen",)), k=3
    )

    assert {Item.objects.get(id=item_id).external_id for item_id, _score in ranked} <= {"tent", "stove", "boots"}
    assert {Item.objects.get(id=item_id).external_id for item_id, _score in kitchen} == {"kettle", "teapot"}
    assert all(-1.0 <= score <= 1.0 for _item_id, score in ranked)


def test_user_gets_what_similar_people_bought_never_what_they_own_or_inactive_items(world):
    answer = recommend_for_user(user=world["people"]["new-hiker"], k=3)

    assert _titles(answer)[:2] == ["tent", "stove"]
    assert "boots" not in _titles(answer) and "retired" not in _titles(answer)
    assert answer.results[0].reason == "because you bought Alpine hiking boots"
    assert "behaviour" in answer.results[0].sources
    assert answer.fallback is True and answer.ranker == "blend"
    assert "no trained ranker" in answer.notes[0]


def test_filters_limit_the_answer(world):
    answer = recommend_for_user(user=world["people"]["new-hiker"], k=5, filters=ItemFilters(categories=("Kitchen",)))

    assert set(_titles(answer)) == {"kettle", "teapot"}


def test_exclude_seen_can_be_turned_off(world):
    answer = recommend_for_user(user=world["people"]["new-hiker"], k=6, exclude_seen=False)

    assert "boots" in _titles(answer)


def test_reason_quotes_the_persons_closest_words(world):
    person = world["people"]["tea1"]
    Activity.objects.create(
        user=person, kind="search", text="a pot for brewing loose-leaf green tea", created_at=timezone.now()
    )
    embedding.embeddings_process_pending()
    person.interest_stale = True
    person.save()
    embedding.user_interest_refresh(user_id=person.id)

    answer = recommend_for_user(user=person, k=6, exclude_seen=False)

    teapot = next(result for result in answer.results if result.item.external_id == "teapot")
    assert teapot.reason == 'you wrote: "a pot for brewing loose-leaf green tea"'


def test_a_person_without_history_gets_popular_items_and_is_told_so(world):
    answer = recommend_for_user(user=UserFactory(), k=3)

    assert _titles(answer) == ["boots", "tent", "stove"]
    assert answer.results[0].reason == "trending in Outdoor"
    assert any("no history yet" in note for note in answer.notes)


def test_answers_are_logged_with_positions_scores_and_reasons(world):
    answer = recommend_for_user(user=world["people"]["new-hiker"], k=3)

    logged = Recommendation.objects.get(id=answer.recommendation_id)
    shown = list(RecommendedItem.objects.filter(recommendation=logged).order_by("position"))
    assert [row.item.external_id for row in shown] == _titles(answer)
    assert shown[0].reason == answer.results[0].reason and shown[0].sources == answer.results[0].sources


def test_pages_are_stable_and_do_not_overlap(world):
    person = world["people"]["new-hiker"]

    first = _titles(recommend_for_user(user=person, k=2, offset=0))
    second = _titles(recommend_for_user(user=person, k=2, offset=2))

    assert first == _titles(recommend_for_user(user=person, k=2, offset=0))
    assert not set(first) & set(second)


def test_per_category_cap_diversifies(world, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "MAX_PER_CATEGORY": 1}

    answer = recommend_for_user(user=world["people"]["new-hiker"], k=3)

    categories = [result.item.category for result in answer.results]
    assert len(categories) == len(set(categories))


def test_behaviour_model_rebuild_replaces_the_active_version(world):
    first = BehaviourModel.objects.get(is_active=True)

    second = behaviour_model_rebuild()

    assert second.version == first.version + 1 and second.is_active
    assert not BehaviourModel.objects.filter(id=first.id).exists()
    assert ItemNeighbour.objects.filter(model=second).exists()


def test_query_count_of_recommend_for_user_does_not_grow_with_the_page(world):
    person = world["people"]["new-hiker"]
    recommend_for_user(user=person, k=5, log=False)

    counts = []
    for k in (1, 5):
        with CaptureQueriesContext(connection) as queries:
            # Computed live (a kept list answers in 6 queries: tests/recommendations/test_precomputed.py).
            recommend_for_user(user=person, k=k, precomputed_list=False, log=False)
        counts.append(len(queries))

    # The person (3), candidate sources (9 with the HNSW settings), features (5: the items'
    # evidence, interactions and texts, is one), ranker and pins (2), the page's items (1),
    # explanations (3, and what others wrote about the items found by meaning), trending total
    # (1): 26 in all since the community vectors and the ranker's evidence features landed.
    assert counts[0] == counts[1] <= 26, counts


def test_interest_vectors_are_unit_length(world):
    vectors = world["people"]["hiker1"].interests.values_list("embedding", flat=True)

    assert vectors and all(np.isclose(np.linalg.norm(vector), 1.0, atol=1e-4) for vector in vectors)


def test_a_free_text_question_gets_the_items_that_answer_it(world):
    answer = recommend_for_text(text="what do I need to make green tea?", k=2)

    assert set(_titles(answer)) == {"kettle", "teapot"}
    assert answer.match == "close"
    # Each reason quotes the item's own words nearest to the question, never the question.
    for result in answer.results:
        kind, quoted = result.reason.split(" ", 1)
        assert kind in ("named", "says", "tagged")
        assert quoted.strip('"') in (result.item.title, result.item.description, *result.item.tags)
        assert "green tea?" not in result.reason
    assert Recommendation.objects.get(id=answer.recommendation_id).query_text == "what do I need to make green tea?"


def test_a_reason_quotes_the_closest_sentence_and_never_the_question_itself(world):
    items = world["items"]
    items["teapot"].description = "Keeps loose-leaf tea hot for an hour. Dishwasher safe lid. Ships in a gift box."
    items["teapot"].save()

    # No floor: this is about the reasons of close answers, whatever the model's floor says.
    answer = recommend_for_text(text="Cast iron teapot", k=5, log=False, match_floor=None)
    asked_about_washing = recommend_for_text(text="can the lid go in the dishwasher?", k=5, log=False, match_floor=None)

    teapot = next(result for result in answer.results if result.item.pk == items["teapot"].pk)
    # The title is the text asked: the reason quotes the item's next-closest words instead.
    assert teapot.reason != 'named "Cast iron teapot"'
    assert teapot.reason.startswith(("says ", "tagged "))
    washing = next(result for result in asked_about_washing.results if result.item.pk == items["teapot"].pk)
    assert washing.reason == 'says "Dishwasher safe lid."'


def test_below_the_match_floor_the_answer_says_nothing_is_close_and_shows_popular_items(world):
    close = recommend_for_text(text="what do I need to make green tea?", k=3, log=False, match_floor=0.0)
    nothing = recommend_for_text(text="what do I need to make green tea?", k=3, match_floor=0.99)

    assert close.match == "close" and close.best_similarity is not None and close.best_similarity < 0.99
    assert nothing.match == "none"
    assert nothing.best_similarity == close.best_similarity
    assert nothing.results, "popular items are shown instead"
    assert all(result.sources == ["popular"] for result in nothing.results)
    assert all(result.reason.startswith("popular") for result in nothing.results)
    assert any("nothing in the catalog is a close match" in note for note in nothing.notes)
    logged = RecommendedItem.objects.filter(recommendation_id=nothing.recommendation_id)
    assert all(not reason.startswith(("named", "says", "tagged")) for reason in logged.values_list("reason", flat=True))


def test_free_text_respects_filters_and_refuses_bad_text(world):
    answer = recommend_for_text(text="tea", k=3, filters=ItemFilters(categories=("Outdoor",)))

    assert {result.item.category for result in answer.results} == {"Outdoor"}
    for bad, message in [("   ", "text is empty"), ("a\x00b", "NUL"), ("x" * 10_001, "the limit is 10000")]:
        with pytest.raises(ApplicationError, match=message):
            recommend_for_text(text=bad)


def test_similar_items_come_from_behaviour_and_text(world):
    items = world["items"]

    answer = similar_items(item=items["boots"], k=2)

    assert _titles(answer) == ["tent", "stove"]
    assert answer.results[0].reason == "people who chose Alpine hiking boots also chose this"
    assert "boots" not in _titles(similar_items(item=items["boots"], k=5))


def test_an_item_nobody_touched_is_similar_by_its_text(world):
    new = Item.objects.create(
        external_id="pan",
        title="Camping frying pan",
        category="Outdoor",
        description="A light pan for cooking at the campsite.",
    )
    embedding.item_embeddings_refresh(item_ids=[new.id])

    answer = similar_items(item=new, k=3)

    assert _titles(answer)[0] in {"stove", "tent"}
    assert answer.results[0].reason == "described like Camping frying pan"
    assert "no one has interacted with this item yet" in answer.notes[0]


def test_semantic_search_is_exact_on_small_catalogs_and_uses_hnsw_above_the_threshold(world, settings):
    from recommendations.retrieval.semantic import use_exact_search

    assert use_exact_search() is True
    settings.RECOMMENDER = {**settings.RECOMMENDER, "EXACT_SEARCH_MAX_VECTORS": -1}
    assert use_exact_search() is False
    query = get_encoder().encode(["gear for a camping trip"], kind="query").vectors[0]
    through_index = semantic_candidates(vectors=[query], model_name="all-MiniLM-L6-v2", filters=ItemFilters(), k=3)
    assert {Item.objects.get(id=item_id).external_id for item_id, _score in through_index} <= {"tent", "stove", "boots"}


def test_a_narrow_filter_is_searched_exactly_on_a_large_catalog(world, settings):
    # "Large": above the exact-scan threshold. A filter the planner expects to leave at most
    # that many items is scanned exactly through the filter (never misses); a broad one goes
    # through HNSW. The planner's estimate needs statistics, as autovacuum keeps in production.
    # Both tables are analysed here: the vector count (use_exact_search) is pg_class.reltuples,
    # which an autovacuum ANALYZE after another test emptied the table leaves at 0, and 0 is
    # "small" (an exact scan for every filter). ANALYZE inside the test's transaction sees the
    # world's rows and holds its lock until the rollback, so autovacuum cannot overwrite it.
    settings.RECOMMENDER = {**settings.RECOMMENDER, "EXACT_SEARCH_MAX_VECTORS": 2, "EXACT_SEARCH_MAX_FILTERED": 2}
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Item._meta.db_table}")
        cursor.execute(f"ANALYZE {ItemVector._meta.db_table}")
    query = get_encoder().encode(["something to brew tea"], kind="query").vectors[0]

    def search(filters: ItemFilters) -> tuple[list[str], bool]:
        with CaptureQueriesContext(connection) as queries:
            found = semantic_candidates(vectors=[query], model_name="all-MiniLM-L6-v2", filters=filters, k=2)
        through_index = any("::vector(384)" in query["sql"] for query in queries)
        return [Item.objects.get(id=item_id).external_id for item_id, _score in found], through_index

    kitchen, kitchen_through_index = search(ItemFilters(categories=("Kitchen",)))  # 2 items
    both, both_through_index = search(ItemFilters(categories=("Kitchen", "Outdoor")))  # 5 active items
    _everything, everything_through_index = search(ItemFilters())

    assert sorted(kitchen) == ["kettle", "teapot"] and not kitchen_through_index
    assert len(both) == 2 and both_through_index
    assert everything_through_index


@pytest.mark.django_db
def test_an_answer_is_logged_with_its_items_in_one_statement(django_assert_num_queries):
    person = UserFactory()
    items = [Item.objects.create(external_id=f"logged-{number}", title=f"Logged {number}") for number in range(3)]
    results = [
        Result(item=item, score=1.0 - position / 10, sources=["popular", "fresh"], reason=f"reason {position}")
        for position, item in enumerate(items)
    ]

    # One round trip to the primary on every request's path (BENCHMARKS.md), not BEGIN,
    # two INSERTs and COMMIT.
    with django_assert_num_queries(1):
        recommendation_id = answer_log(context=RecommendationContext.USER, user=person, results=results, ranker_id=None)

    logged = Recommendation.objects.get(id=recommendation_id)
    assert (logged.user_id, logged.context, logged.query_text) == (person.id, "user", "")
    assert list(
        RecommendedItem.objects.filter(recommendation=logged).values_list(
            "item_id", "position", "score", "sources", "reason"
        )
    ) == [
        (item.id, position, 1.0 - position / 10, ["popular", "fresh"], f"reason {position}")
        for position, item in enumerate(items)
    ]


def _wal_flushes_of_this_connection() -> int:
    """How many times this connection's own backend has waited for the WAL to reach the disk."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT 1")  # a statement ends, so the backend's statistics are reported
        cursor.execute(
            "SELECT COALESCE(SUM(fsyncs), 0) FROM pg_stat_get_backend_io(pg_backend_pid()) WHERE object = 'wal'"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_an_answer_log_commits_without_waiting_for_the_disk_unless_inside_a_transaction():
    person = UserFactory()
    item = Item.objects.create(external_id="logged-once", title="Logged once")
    results = [Result(item=item, score=1.0, sources=["popular"], reason="popular")]

    before = _wal_flushes_of_this_connection()
    logged = [answer_log(context=RecommendationContext.USER, user=person, results=results) for _ in range(5)]
    assert _wal_flushes_of_this_connection() == before  # committed, never waited on the disk
    assert Recommendation.objects.filter(id__in=logged).count() == 5
    # A write the API acknowledges still waits for the disk on the same connection.
    Item.objects.create(external_id="acknowledged", title="Acknowledged")
    assert _wal_flushes_of_this_connection() == before + 1

    # Inside a caller's transaction the log must not make the caller's own writes asynchronous:
    # the transaction commits as durably as it would without the log.
    with transaction.atomic():
        Item.objects.create(external_id="written-with-the-log", title="Written with the log")
        inside = answer_log(context=RecommendationContext.USER, user=person, results=results)
    assert _wal_flushes_of_this_connection() == before + 2
    assert Recommendation.objects.filter(id=inside).exists()


@pytest.mark.django_db
def test_an_empty_answer_is_logged_too():
    recommendation_id = answer_log(context=RecommendationContext.TEXT, user=None, results=[], query_text="nothing")

    logged = Recommendation.objects.get(id=recommendation_id)
    assert (logged.user_id, logged.query_text, logged.items.count()) == (None, "nothing", 0)
