"""Reads "as of" a past moment from the interactions in memory (retrieval/history.py) give what
the SQL gives: popularity, trend, first interaction and evidence, and the re-ranker's training
data built with the snapshot is the data built without it."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core.conf import recommender_settings
from recommendations.ranking.features import INDEX, _item_evidence
from recommendations.ranking.training import training_data_build
from recommendations.retrieval.history import interaction_history, interactions_snapshot
from recommendations.retrieval.popular import item_popularity
from recommendations.retrieval.semantic import item_vectors_for
from tests.factories import ActivityFactory, ItemFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_ranker_cache")]

START = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def history_rows():
    """Three items and four people over sixty days: repeated choices of one item by one person,
    dismissals (never counted), reviews and a comment (texts), an item nobody chose, and two
    activities at the very moment the tests ask about (before means strictly before)."""
    items = ItemFactory.create_batch(4)
    people = UserFactory.create_batch(4)
    rows = [
        # (person, item, kind, day, text)
        (0, 0, "view", 0, None),
        (0, 0, "purchase", 2, None),
        (0, 0, "review", 3, "Kept me dry for three days."),
        (1, 0, "click", 10, None),
        (1, 1, "dismiss", 11, None),
        (2, 1, "view", 20, None),
        (2, 1, "comment", 21, "Too small for me."),
        (3, 1, "rating", 30, None),
        (3, 2, "dismiss", 31, "not for me"),
        (1, 2, "add_to_cart", 45, None),
        (0, 1, "purchase", 59.5, None),
        (2, 0, "view", 60, None),
    ]
    for person, item, kind, day, text in rows:
        ActivityFactory.create(
            user=people[person],
            item=items[item],
            kind=kind,
            text=text,
            rating=4.0 if kind == "rating" else None,
            created_at=START + timedelta(days=day),
        )
    return {"item_ids": [item.id for item in items]}


MOMENTS = [START + timedelta(days=day) for day in (-1, 0, 2.5, 15, 31, 45, 59.9, 60, 61, 400)]


def test_popularity_and_evidence_as_of_a_moment_read_from_memory_equal_the_sql(history_rows):
    item_ids = history_rows["item_ids"]
    from_sql = [
        (item_popularity(item_ids=item_ids, as_of=moment), _item_evidence(item_ids=item_ids, as_of=moment))
        for moment in MOMENTS
    ]
    with interactions_snapshot():
        from_memory = [
            (item_popularity(item_ids=item_ids, as_of=moment), _item_evidence(item_ids=item_ids, as_of=moment))
            for moment in MOMENTS
        ]

    for moment, (sql_popularity, sql_evidence), (memory_popularity, memory_evidence) in zip(
        MOMENTS, from_sql, from_memory, strict=True
    ):
        assert memory_popularity.keys() == sql_popularity.keys(), moment
        for item_id, expected in sql_popularity.items():
            read = memory_popularity[item_id]
            assert read.people == expected.people, (moment, item_id)
            assert read.first_interaction_at == expected.first_interaction_at, (moment, item_id)
            assert read.trending_share == pytest.approx(expected.trending_share, rel=1e-9), (moment, item_id)
        # The SQL lists items with any activity before the moment, (0, 0) included; both read
        # a missing item as (0, 0).
        assert memory_evidence == {item_id: pair for item_id, pair in sql_evidence.items() if pair != (0, 0)}
    # The fixture's moments see something and something different: not a comparison of empties.
    assert {len(popularity) for popularity, _evidence in from_sql} >= {0, 1, 2, 3}
    day_61 = from_sql[MOMENTS.index(START + timedelta(days=61))]
    assert day_61[1][history_rows["item_ids"][0]] == (5, 1)  # 5 interactions, one review
    assert day_61[0][history_rows["item_ids"][0]].people == 3.0  # three people, one of them thrice


def test_the_snapshot_is_only_read_inside_its_block(history_rows):
    with interactions_snapshot() as history:
        assert interaction_history() is history
    assert interaction_history() is None
    # Now (no as_of) is never read from a snapshot: ItemStats, as served.
    with interactions_snapshot():
        assert item_popularity(item_ids=history_rows["item_ids"]) == {}


def test_the_rankers_training_data_is_the_same_with_and_without_the_snapshot(themes_world, monkeypatch):
    with_snapshot = training_data_build(label_fraction=0.2, max_people=0, cold_share=0.25)

    # The same build with the snapshot switched off: every as-of read goes to SQL.
    class NoSnapshot:
        def __enter__(self):
            return None

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr("recommendations.ranking.training.interactions_snapshot", NoSnapshot)
    without = training_data_build(label_fraction=0.2, max_people=0, cold_share=0.25)

    assert with_snapshot.groups == without.groups and with_snapshot.cold == without.cold
    assert np.array_equal(with_snapshot.labels, without.labels)
    assert np.allclose(with_snapshot.matrix, without.matrix, equal_nan=True, rtol=1e-9, atol=1e-12)
    assert np.any(with_snapshot.matrix[:, INDEX["popularity"]] > 0)  # popularity was read as of each cut-off


def test_item_vectors_are_read_once_inside_a_snapshot(themes_world, django_assert_num_queries):
    item_ids = [item.id for item in themes_world["items"].values()]
    outside = item_vectors_for(item_ids=item_ids[:5], model_name="all-MiniLM-L6-v2")
    with interactions_snapshot():
        with django_assert_num_queries(1):
            first = item_vectors_for(item_ids=item_ids[:5], model_name="all-MiniLM-L6-v2")
        with django_assert_num_queries(1):  # only the three not read yet
            second = item_vectors_for(item_ids=item_ids[3:8], model_name="all-MiniLM-L6-v2")
        with django_assert_num_queries(0):
            again = item_vectors_for(item_ids=item_ids[:8], model_name="all-MiniLM-L6-v2")

    assert len(outside) == 5 and all(np.array_equal(first[key], outside[key]) for key in outside)
    assert set(second) == set(item_ids[3:8]) and set(again) == set(item_ids[:8])


def _state_fields(state):
    return (
        state.history,
        state.recent,
        state.liked,
        state.evidence,
        state.seen,
        [vector.tolist() for vector in state.interests],
        [(text, vector.tolist()) for text, vector in state.texts],
        state.moment,
        state.previous_moment,
    )


def test_a_person_as_of_a_moment_read_from_memory_equals_the_sql(history_rows):
    """person_state(as_of) inside a snapshot (activities, interests and their words from
    memory, their vectors read once) is the person the SQL reads, at every moment."""
    from recommendations.retrieval.person import person_state
    from recommendations.vectors.embedding import embeddings_process_pending
    from users.models import User

    searcher = User.objects.order_by("id").first()
    ActivityFactory.create(
        user=searcher, item=None, kind="search", text="a dry tent", created_at=START + timedelta(days=1)
    )
    embeddings_process_pending()
    model_name = recommender_settings().serving_model
    people = list(User.objects.order_by("id").values_list("id", flat=True))
    from_sql = [
        person_state(user_id=user_id, model_name=model_name, as_of=moment) for user_id in people for moment in MOMENTS
    ]
    with interactions_snapshot():
        from_memory = [
            person_state(user_id=user_id, model_name=model_name, as_of=moment)
            for user_id in people
            for moment in MOMENTS
        ]

    for sql_state, memory_state in zip(from_sql, from_memory, strict=True):
        assert _state_fields(memory_state) == _state_fields(sql_state), (sql_state.user_id, sql_state.as_of)
    # Not a comparison of empties: some states hold interests, words and ratings.
    assert any(state.interests for state in from_sql) and any(state.texts for state in from_sql)
    assert any(rating is not None for state in from_sql for _kind, rating in state.evidence.values())
