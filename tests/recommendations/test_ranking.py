"""The trained re-ranker: training data as of each person's past, versions, activation, serving."""

from typing import cast

import numpy as np
import pytest
from django.utils import timezone

from catalog.models import Placement
from catalog.services import item_set_placement
from recommendations.ml.ranker import Ranker, ndcg_of_groups
from recommendations.models import BehaviourModel, PrecomputedList, RankerModel, Recommendation
from recommendations.ranking.active import ranker_activate
from recommendations.ranking.features import FEATURES
from recommendations.ranking.training import activation_refusals, ranker_train
from recommendations.retrieval.person import person_state
from recommendations.retrieval.popular import item_popularity
from recommendations.serving.service import recommend_for_user
from users.models import Activity

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_ranker_cache")]

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture
def world(themes_world):
    return themes_world


def test_person_state_as_of_a_moment_sees_only_what_came_before(world):
    person = world["people"][0]
    activities = list(Activity.objects.filter(user=person).order_by("created_at"))
    cut = activities[3].created_at

    state = person_state(user_id=person.id, model_name=MODEL, as_of=cut)

    assert state.seen == {activity.item_id for activity in activities[:3]}
    assert list(state.history) == [activity.item_id for activity in reversed(activities[:3])]
    assert state.interests  # built from those three items only, in memory


def test_item_popularity_as_of_counts_only_earlier_interactions(world):
    item = world["items"][("hiking", 0)]
    interactions = list(Activity.objects.filter(item=item).order_by("created_at"))
    assert len(interactions) >= 2

    before_second = item_popularity(item_ids=[item.id], as_of=interactions[1].created_at)
    now = item_popularity(item_ids=[item.id], as_of=timezone.now())

    assert before_second[item.id].people == 1.0
    assert now[item.id].people == len({activity.user_id for activity in interactions})
    assert before_second[item.id].first_interaction_at == pytest.approx(interactions[0].created_at.timestamp())


def test_training_stores_two_versions_with_metrics_and_deletes_its_model_of_the_past(world):
    versions = ranker_train(max_people=32)

    assert sorted(version.algorithm for version in versions) == ["lambdarank", "logistic_regression"]
    for version in versions:
        metrics = version.validation_metrics
        assert 0.0 <= metrics["ndcg@20"] <= 1.0
        assert set(metrics["single_sources"]) == {"behaviour", "semantic", "popular"}
        assert metrics["training_people"] + metrics["validation_people"] <= 32
        assert metrics["training_positives"] > 0
        assert version.trained_from <= version.trained_until
        assert version.features == list(FEATURES)
        ranker = Ranker.from_bytes(version.artifact)
        assert ranker.score(np.zeros((3, len(FEATURES)))).shape == (3,)
    # Only the served behaviour model is left: the one of the past was deleted after use.
    assert list(BehaviourModel.objects.values_list("is_active", flat=True)) == [True]
    best = max(versions, key=lambda version: version.validation_metrics["ndcg@20"])
    best.refresh_from_db()
    assert best.notes.startswith("activated" if best.is_active else "not activated")


def test_a_retrained_version_that_does_not_beat_the_active_one_stays_inactive(world):
    first = ranker_train(max_people=32)
    best = max(first, key=lambda version: version.validation_metrics["ndcg@20"])
    ranker_activate(ranker=best)

    second = ranker_train(max_people=32)  # the same data and seed: the same scores, no better

    assert RankerModel.objects.get(is_active=True).pk == best.pk
    challenger = max(second, key=lambda version: version.validation_metrics["ndcg@20"])
    challenger.refresh_from_db()
    assert "does not beat the active version" in challenger.notes
    assert challenger.validation_metrics["active_version"] == best.version


def test_activation_needs_to_beat_every_single_source_and_the_active_version():
    assert activation_refusals(score=0.30, best_source=0.25, active=None, k=20) == []
    assert activation_refusals(score=0.30, best_source=0.25, active=0.28, k=20) == []
    assert activation_refusals(score=0.25, best_source=0.25, active=None, k=20) == [
        "NDCG@20 0.25 does not beat the best single source (0.25)"
    ]
    assert activation_refusals(score=0.30, best_source=0.10, active=0.31, k=20) == [
        "NDCG@20 0.3 does not beat the active version (0.31)"
    ]


def test_the_service_scores_with_the_active_ranker_and_names_it(world):
    versions = ranker_train(max_people=32, activate=False)
    chosen = next(version for version in versions if version.algorithm == "lambdarank")
    ranker_activate(ranker=chosen)

    answer = recommend_for_user(user=world["people"][5], k=5, log=False)

    assert answer.ranker == f"lambdarank v{chosen.version}"
    assert answer.fallback is False
    assert len(answer.results) == 5
    assert not any("blend" in note for note in answer.notes)


def test_without_a_ranker_the_service_uses_the_blend_and_says_so(world):
    answer = recommend_for_user(user=world["people"][5], k=5, log=False)

    assert answer.ranker == "blend" and answer.fallback is True
    assert "no trained ranker is active: results use the documented blend" in answer.notes


def _activate_a_ranker_reading_an_unknown_feature(*, version: int) -> None:
    """An active version that reads a feature this code does not compute: it cannot score."""
    broken = Ranker(
        "logistic_regression", ["no_such_feature"], {"mean": [0], "scale": [1], "coef": [1], "intercept": 0}
    )
    RankerModel.objects.create(
        version=version, algorithm="logistic_regression", features=["no_such_feature"], artifact=broken.to_bytes()
    )
    ranker_activate(ranker=RankerModel.objects.get(version=version))


def test_a_ranker_that_reads_unknown_features_falls_back_to_the_blend(world):
    _activate_a_ranker_reading_an_unknown_feature(version=1)

    answer = recommend_for_user(user=world["people"][5], k=5, log=False)

    assert answer.ranker == "blend" and answer.fallback is True
    assert len(answer.results) == 5


def test_an_active_ranker_that_cannot_score_is_named_in_the_fallback_note(world):
    _activate_a_ranker_reading_an_unknown_feature(version=3)

    answer = recommend_for_user(user=world["people"][5], k=5, precomputed_list=False, log=False)

    assert answer.ranker == "blend" and answer.fallback is True
    assert answer.notes[0] == (
        "ranker v3 cannot score: the ranker reads features this version does not compute: no_such_feature: "
        "results use the documented blend"
    )
    assert not any("no trained ranker is active" in note for note in answer.notes)


def _behaviour_only_ranker(version: int) -> RankerModel:
    """A trained-ranker version without the training: it scores by the behaviour feature."""
    ranker = Ranker("logistic_regression", ["behaviour"], {"mean": [0], "scale": [1], "coef": [1], "intercept": 0})
    return RankerModel.objects.create(
        version=version, algorithm="logistic_regression", features=["behaviour"], artifact=ranker.to_bytes()
    )


def test_the_log_names_the_ranker_that_answered_live_and_from_a_kept_list(world):
    person = world["people"][5]

    def logged_ranker_id(**options) -> int | None:
        answer = recommend_for_user(user=person, k=5, **options)
        return Recommendation.objects.get(id=cast(str, answer.recommendation_id)).ranker_id

    assert logged_ranker_id(precomputed_list=False) is None  # the blend: no trained ranker answered
    ranker = ranker_activate(ranker=_behaviour_only_ranker(version=7))

    assert logged_ranker_id(precomputed_list=False) == ranker.pk
    assert logged_ranker_id() == ranker.pk  # the list is computed now, with this ranker
    assert PrecomputedList.objects.filter(user=person).exists()
    assert logged_ranker_id() == ranker.pk  # read back from the kept list
    assert logged_ranker_id(scoring="blend") is None


def test_banned_items_are_never_recommended_and_pinned_ones_come_first(world):
    person = world["people"][0]  # a hiker
    usual = recommend_for_user(user=person, k=5, log=False)
    top = usual.results[0].item
    featured = world["items"][("jazz", 7)]

    item_set_placement(item_ids=[top.id], placement=Placement.BANNED)
    item_set_placement(item_ids=[featured.id], placement=Placement.PINNED)
    answer = recommend_for_user(user=person, k=5, log=False)

    ids = [result.item.id for result in answer.results]
    assert top.id not in ids
    assert ids[0] == featured.id
    assert answer.results[0].reason == "featured"
    assert "pinned" in answer.results[0].sources


def test_ndcg_of_groups_counts_relevant_items_the_candidates_missed():
    scores = np.array([0.9, 0.1, 0.5, 0.4])
    labels = np.array([1.0, 0.0, 0.0, 1.0])
    # Group 1: its only relevant item first -> 1. Group 2: its relevant item second of two,
    # but the person had two relevant items (one never proposed): (1/log2 3) / (1 + 1/log2 3).
    value = ndcg_of_groups(scores, labels, [2, 2], k=20, relevant=[1, 2])
    expected = (1.0 + (1 / np.log2(3)) / (1 + 1 / np.log2(3))) / 2
    assert value == pytest.approx(expected)


def test_what_counts_as_seen_is_a_setting_per_kind_of_activity(world, settings):
    person = world["people"][0]
    top = recommend_for_user(user=person, k=3, log=False).results[0].item
    Activity.objects.create(user=person, item=top, kind="view", created_at=timezone.now())
    bought = set(Activity.objects.filter(user=person, kind="purchase").values_list("item_id", flat=True))

    def recommended() -> set[int]:
        return {result.item.id for result in recommend_for_user(user=person, k=30, log=False).results}

    assert top.id not in recommended()  # by default every kind of activity makes an item seen
    settings.RECOMMENDER = {**settings.RECOMMENDER, "EXCLUDE_SEEN_KINDS": ("purchase", "rating")}
    assert top.id in recommended()  # only looked at: may come back
    assert not bought & recommended()


def test_a_page_deeper_than_pgvectors_search_breadth_limit_still_answers(world):
    # pgvector refuses hnsw.ef_search above 1000; candidates + offset + k can exceed it.
    answer = recommend_for_user(user=world["people"][1], k=20, offset=990, log=False)

    assert answer.results == []  # 32 items: nothing that deep, but no error either


def test_an_ablation_orders_by_one_source_alone(world):
    person = world["people"][2]

    answer = recommend_for_user(user=person, k=5, sources=("popular",), scoring="source", log=False)

    assert answer.ranker == "popular source order"
    assert all(result.sources == ["popular"] for result in answer.results)
    assert [result.score for result in answer.results] == sorted((r.score for r in answer.results), reverse=True)
    with pytest.raises(ValueError, match="exactly one"):
        recommend_for_user(user=person, sources=("popular", "semantic"), scoring="source", log=False)


def test_train_ranker_command_reports_each_version_and_refuses_bad_input(world):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("train_ranker", "--max-people", "32", "--algorithm", "logistic_regression", stdout=out)

    assert "ranker v1 logistic_regression: validation ndcg@20" in out.getvalue()
    assert RankerModel.objects.count() == 1
    with pytest.raises(CommandError, match="at least 2"):
        call_command("train_ranker", "--max-people", "1")
