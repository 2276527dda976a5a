"""The re-ranker learns cold items (#14 item 3): items made cold on purpose in its training, features
saying how much evidence an item has, the order of a person's items, and everyone with a label."""

import math
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from core.conf import recommender_settings
from recommendations.models import ItemNeighbour
from recommendations.ranking.features import INDEX, features_compute
from recommendations.ranking.training import ranker_train, training_data_build
from recommendations.retrieval.behaviour import active_behaviour_model_id
from recommendations.retrieval.candidates import candidates_gather, item_vectors_with_recent
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.person import person_state
from tests.factories import UserFactory
from users.models import Activity

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_ranker_cache")]

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture
def world(themes_world):
    return themes_world


def _rows_of(data, *, cold: bool) -> np.ndarray:
    """The rows of the groups of one kind."""
    return data.of_kind(cold=cold).matrix


def test_training_makes_a_seeded_share_of_items_cold_and_ranks_them_apart_for_who_chose_them(world):
    # Every one of the 32 items has 6 purchases (>= 5): a quarter of them, 8, are made cold.
    data = training_data_build(label_fraction=0.2, max_people=0, cold_share=0.25)
    plain = training_data_build(label_fraction=0.2, max_people=0, cold_share=0.0)

    assert data.counts["cold_items"] == 8 and plain.counts["cold_items"] == 0
    assert any(data.cold) and not any(plain.cold)
    cold_rows = _rows_of(data, cold=True)
    # The cold items read as items nobody has chosen: no popularity, no interactions, no
    # behaviour (the model of the past never saw them), flagged unproven.
    assert np.all(cold_rows[:, INDEX["item_unproven"]] == 1.0)
    assert np.all(cold_rows[:, INDEX["popularity"]] == 0.0)
    assert np.all(cold_rows[:, INDEX["item_interactions"]] == 0.0)
    assert np.all(cold_rows[:, INDEX["behaviour"]] == 0.0)
    # ...while text still describes them, and each cold group holds what its person chose next.
    assert np.all(~np.isnan(cold_rows[:, INDEX["semantic_best"]]))
    cold_part = data.of_kind(cold=True)
    starts = np.concatenate([[0], np.cumsum(cold_part.groups)[:-1]]).astype(int)
    assert np.all(np.add.reduceat(cold_part.labels, starts) >= 1)
    # The same seed makes the same items cold.
    again = training_data_build(label_fraction=0.2, max_people=0, cold_share=0.25)
    assert again.groups == data.groups and np.array_equal(again.labels, data.labels)


def test_a_share_of_cold_items_outside_zero_to_one_is_refused(world):
    from recommendations.ranking.active import RankerError

    with pytest.raises(RankerError, match="share of items made cold"):
        training_data_build(label_fraction=0.2, max_people=0, cold_share=1.0)


def test_versions_report_validation_on_warm_and_cold_groups_beside_each_source(world):
    versions = ranker_train(cold_share=0.25, data_note="Trained on a test world.")

    for version in versions:
        metrics = version.validation_metrics
        assert metrics["cold_items"] == 8
        assert metrics["training_cold_groups"] > 0
        assert 0.0 <= metrics["warm_ndcg@20"] <= 1.0
        assert set(metrics["single_sources_cold"]) == {"behaviour", "semantic", "popular"}
        # Behaviour and popularity know nothing of cold items: they rank them no better than 0.
        if metrics["validation_cold_groups"]:
            assert 0.0 <= metrics["cold_ndcg@20"] <= 1.0
        version.refresh_from_db()
        assert version.notes.endswith("Trained on a test world.")


def test_everyone_with_a_past_and_a_label_learns_even_with_two_interactions(world):
    sparse = UserFactory.create(username="sparse")
    start = world["start"] + timedelta(days=50)
    for step, number in enumerate((1, 2)):
        Activity.objects.create(
            user=sparse, item=world["items"][("tea", number)], kind="purchase", created_at=start + timedelta(days=step)
        )

    data = training_data_build(label_fraction=0.2, max_people=recommender_settings().ranker_max_people, cold_share=0)

    assert recommender_settings().ranker_max_people == 0  # the default: no sample, everyone
    assert data.counts["labelled_people"] == 33 == data.counts["people_read"]
    assert len(set(data.owners)) == 33


def test_sequence_and_evidence_features_describe_the_last_items_and_what_people_wrote(world):
    person = world["people"][0]
    other = world["people"][4]  # the same theme
    history = list(Activity.objects.filter(user=person).order_by("-created_at"))
    state = person_state(user_id=person.id, model_name=MODEL)
    candidates = candidates_gather(
        state=state, filters=ItemFilters(exclude_ids=frozenset(state.seen)), size=50, model_name=MODEL
    )
    target = next(iter(candidates))
    Activity.objects.create(user=other, item_id=target, kind="review", text="Lovely", created_at=timezone.now())
    Activity.objects.create(user=other, item_id=target, kind="comment", text="Again", created_at=timezone.now())

    features_compute(state=state, candidates=candidates, model_name=MODEL, size=50)

    values = candidates[target].feature_row()
    vectors, _recent = item_vectors_with_recent(state=state, item_ids=[target], model_name=MODEL)
    last_three = [activity.item_id for activity in history[:3]]
    cosines = [float(vectors[target] @ vectors[item_id]) for item_id in last_three]
    assert values[INDEX["semantic_last"]] == pytest.approx(cosines[0], abs=1e-6)
    assert values[INDEX["semantic_last3_mean"]] == pytest.approx(np.mean(cosines), abs=1e-6)
    weight = (
        ItemNeighbour.objects.filter(
            model_id=active_behaviour_model_id(), item_id=history[0].item_id, neighbour_id=target
        )
        .values_list("weight", flat=True)
        .first()
    )
    assert values[INDEX["behaviour_last"]] == pytest.approx(weight or 0.0)
    hours = (history[0].created_at - history[1].created_at).total_seconds() / 3600
    assert values[INDEX["hours_between_last"]] == pytest.approx(math.log1p(hours))
    # Texts about the item are counted from the activities (two: a review and a comment), and
    # every activity with the item is an interaction.
    interactions = Activity.objects.filter(item_id=target).exclude(kind="dismiss").count()
    assert values[INDEX["item_texts"]] == pytest.approx(math.log1p(2))
    assert values[INDEX["item_interactions"]] == pytest.approx(math.log1p(interactions))
    assert values[INDEX["item_unproven"]] == 0.0
    assert values[INDEX["unproven_semantic_best"]] == 0.0


def test_as_of_a_moment_the_evidence_counts_only_what_came_before(world):
    item = world["items"][("hiking", 0)]
    interactions = list(Activity.objects.filter(item=item).order_by("created_at"))
    person = UserFactory.create(username="newcomer")
    Activity.objects.create(
        user=person, item=world["items"][("jazz", 0)], kind="view", created_at=interactions[0].created_at
    )
    state = person_state(user_id=person.id, model_name=MODEL, as_of=interactions[0].created_at + timedelta(seconds=1))
    candidates = candidates_gather(
        state=state, filters=ItemFilters(only_ids=frozenset({item.id})), size=10, model_name=MODEL
    )
    assert item.id in candidates

    features_compute(state=state, candidates=candidates, model_name=MODEL, size=10)
    hidden = candidates_gather(
        state=state, filters=ItemFilters(only_ids=frozenset({item.id})), size=10, model_name=MODEL
    )
    features_compute(state=state, candidates=hidden, model_name=MODEL, size=10, hidden_items=frozenset({item.id}))

    assert candidates[item.id].feature_row()[INDEX["item_interactions"]] == pytest.approx(math.log1p(1))
    assert candidates[item.id].feature_row()[INDEX["item_unproven"]] == 0.0
    assert hidden[item.id].feature_row()[INDEX["item_interactions"]] == 0.0
    assert hidden[item.id].feature_row()[INDEX["item_unproven"]] == 1.0
    assert hidden[item.id].feature_row()[INDEX["unproven_semantic_best"]] == pytest.approx(
        hidden[item.id].feature_row()[INDEX["semantic_best"]]
    )


def test_the_item_year_says_how_old_an_item_is_and_how_far_from_the_years_the_person_chose(world):
    from catalog.models import Item

    person = world["people"][0]
    state = person_state(user_id=person.id, model_name=MODEL)
    Item.objects.filter(id__in=list(state.history)).update(attributes={"year": 2000})
    candidates = candidates_gather(
        state=state, filters=ItemFilters(exclude_ids=frozenset(state.seen)), size=50, model_name=MODEL
    )
    dated, undated, odd = list(candidates)[:3]
    Item.objects.filter(id=dated).update(attributes={"year": 2010})
    Item.objects.filter(id=odd).update(attributes={"year": "not a year"})

    features_compute(state=state, candidates=candidates, model_name=MODEL, size=50)

    now = timezone.now()
    assert candidates[dated].feature_row()[INDEX["year_gap"]] == pytest.approx(10.0)
    assert candidates[dated].feature_row()[INDEX["release_age_years"]] == pytest.approx(now.year - 2010, abs=1.0)
    for item_id in (undated, odd):
        assert np.isnan(candidates[item_id].feature_row()[INDEX["year_gap"]])
        assert np.isnan(candidates[item_id].feature_row()[INDEX["release_age_years"]])
