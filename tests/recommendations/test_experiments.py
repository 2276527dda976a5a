"""Experiments against the real service, database and encoder: arms serve, the log names them,
the metrics come from the logs, bad experiments are refused, promote and stop are recorded, the
replay check and the simulated example show on the staff pages."""

from collections import Counter
from datetime import timedelta
from typing import cast

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from recommendations.experiments.replay import replay_check_run
from recommendations.experiments.services import (
    ArmSpec,
    ExperimentInvalid,
    experiment_create,
    experiment_metrics_refresh,
    experiment_promote,
    experiment_stop,
)
from recommendations.ml.ranker import Ranker
from recommendations.models import (
    Experiment,
    ExperimentArm,
    ExperimentDecision,
    ExperimentSurface,
    RankerModel,
    Recommendation,
    RecommendedItem,
)
from recommendations.ranking.active import ranker_activate
from recommendations.serving.arms import arm_for_bucket, arm_for_person, assignment_bucket, running_arms
from recommendations.serving.feedback import feedback_record
from recommendations.serving.service import recommend_for_text, recommend_for_user
from tests.factories import StaffUserFactory
from users.models import Activity, ActivityKind, User
from users.services import user_delete

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_ranker_cache")]


@pytest.fixture
def world(themes_world):
    return themes_world


def _ranker(version: int, feature: str) -> RankerModel:
    """A stored version that orders by one feature (a trained version without the training)."""
    model = Ranker("logistic_regression", [feature], {"mean": [0], "scale": [1], "coef": [1], "intercept": 0})
    return RankerModel.objects.create(
        version=version,
        algorithm="logistic_regression",
        features=[feature],
        artifact=model.to_bytes(),
        validation_metrics={"ndcg@20": 0.25 + version / 100},
    )


def _running(*arms: ArmSpec, surface: str = ExperimentSurface.USER, name: str = "blend vs ranker") -> Experiment:
    now = timezone.now()
    return experiment_create(
        name=name,
        surface=surface,
        start_at=now - timedelta(minutes=1),
        end_at=now + timedelta(days=14),
        arms=list(arms),
        created_by=None,
    )


def _blend_vs(ranker: RankerModel, *, shares=(50, 50)) -> Experiment:
    return _running(
        ArmSpec(name="blend", ranker_id=None, share=shares[0]),
        ArmSpec(name=f"v{ranker.version}", ranker_id=ranker.pk, share=shares[1]),
    )


def _logged(answer) -> Recommendation:
    return Recommendation.objects.get(id=cast(str, answer.recommendation_id))


def test_each_person_is_answered_by_their_arm_and_every_logged_answer_names_it(world):
    ranker = _ranker(1, "popularity")
    experiment = _blend_vs(ranker)
    arms = running_arms(surface=ExperimentSurface.USER)
    seen_arms = Counter()

    for person in world["people"]:
        expected = arm_for_bucket(arms, assignment_bucket(experiment_id=experiment.pk, person_id=person.pk))
        live = _logged(recommend_for_user(user=person, k=5, precomputed_list=False))
        first = recommend_for_user(user=person, k=5)  # computes and keeps the arm's list
        kept = recommend_for_user(user=person, k=5)  # answered from that list
        for answer in (live, _logged(first), _logged(kept)):
            assert (answer.experiment_id, answer.arm_id) == (experiment.pk, expected.arm_id)
            assert answer.ranker_id == expected.ranker_id  # None: the blend arm
        assert first.ranker == ("blend" if expected.ranker_id is None else "logistic_regression v1")
        assert [result.item.id for result in first.results] == [result.item.id for result in kept.results]
        seen_arms[expected.arm_id] += 1

    assert len(seen_arms) == 2  # 32 people, 50/50: both arms answered someone


def test_the_arm_does_not_follow_the_active_ranker_and_ends_with_the_experiment(world):
    treatment = _ranker(2, "popularity")
    active = ranker_activate(ranker=_ranker(3, "behaviour"))
    experiment = _blend_vs(treatment, shares=(1, 99))
    person = next(
        person
        for person in world["people"]
        if arm_for_person(surface=ExperimentSurface.USER, person_id=person.pk).ranker_id == treatment.pk
    )

    assert _logged(recommend_for_user(user=person, k=5)).ranker_id == treatment.pk

    experiment_stop(experiment=experiment, by=StaffUserFactory())

    after = _logged(recommend_for_user(user=person, k=5))
    assert after.experiment_id is None and after.arm_id is None
    assert after.ranker_id == active.pk  # the kept list of the arm is stale now: recomputed


def test_an_experiment_costs_a_request_one_small_query(world, django_assert_num_queries):
    # A plain request answered from the kept list: the list with the person's signature (two
    # queries before experiments, one since), the items the rules keep, pins, the page's items,
    # and the running experiment's arms, which a request outside any experiment pays as well.
    person = world["people"][3]
    recommend_for_user(user=person, k=5, log=False)  # keeps the list
    with django_assert_num_queries(5) as outside:
        assert recommend_for_user(user=person, k=5, log=False).experiment_id is None
    experiment = _blend_vs(_ranker(4, "popularity"))
    recommend_for_user(user=person, k=5, log=False)  # the arm's list

    with django_assert_num_queries(5) as inside:
        answer = recommend_for_user(user=person, k=5, log=False)

    assert answer.experiment_id == experiment.pk
    assert_one_arm_lookup(outside, inside)


def test_anonymous_visitors_and_other_surfaces_take_no_part(world):
    _blend_vs(_ranker(5, "popularity"))

    answer = recommend_for_text(text="green tea and a kettle", user=None, k=5)

    logged = _logged(answer)
    assert logged.experiment_id is None and logged.arm_id is None
    assert arm_for_person(surface=ExperimentSurface.USER, person_id=None) is None
    assert arm_for_person(surface=ExperimentSurface.TEXT, person_id=world["people"][0].pk) is None


def assert_one_arm_lookup(*captured_requests) -> None:
    """Each request's queries read the running experiment's arms once, by the (surface, end_at) index."""
    for captured in captured_requests:
        lookups = [query["sql"] for query in captured.captured_queries if ExperimentArm._meta.db_table in query["sql"]]
        assert len(lookups) == 1 and "end_at" in lookups[0]


def _refused(**changes) -> dict[str, list[str]]:
    return experiment_refused(**changes)


def experiment_refused(**changes) -> dict[str, list[str]]:
    """The fields experiment_create refuses for a two-arm personal experiment with these changes."""
    now = timezone.now()
    options = {
        "name": "a test",
        "surface": ExperimentSurface.USER,
        "start_at": now,
        "end_at": now + timedelta(days=7),
        "arms": [ArmSpec("a", None, 50), ArmSpec("b", None, 50)],
        "created_by": None,
        **changes,
    }
    with pytest.raises(ExperimentInvalid) as refused:
        experiment_create(**options)
    return refused.value.fields


def test_bad_experiments_are_refused_with_what_is_wrong_and_nothing_is_saved(world):
    ranker = _ranker(6, "popularity")
    untrained = RankerModel.objects.create(version=7, algorithm="lambdarank", features=["popularity"], artifact=b"")
    now = timezone.now()

    assert _refused(arms=[ArmSpec("a", None, 60), ArmSpec("b", ranker.pk, 30)])["shares"] == [
        "the shares sum to 90%, not 100%"
    ]
    assert _refused(arms=[ArmSpec("a", None, 50), ArmSpec("b", 999_999, 50)])["arms"] == [
        "arm b: ranker 999999 does not exist"
    ]
    assert _refused(arms=[ArmSpec("a", None, 50), ArmSpec("b", untrained.pk, 50)])["arms"] == [
        "arm b: ranker v7 is not trained (no model stored)"
    ]
    assert _refused(arms=[ArmSpec("a", None, 100)])["arms"] == ["an experiment needs at least two arms"]
    assert _refused(end_at=now - timedelta(days=1))["end_at"] == ["the end must be after the start"]
    assert (
        "text-model arms"
        in _refused(surface=ExperimentSurface.TEXT, arms=[ArmSpec("a", None, 50), ArmSpec("b", ranker.pk, 50)])["arms"][
            0
        ]
    )
    assert Experiment.objects.count() == 0 and ExperimentArm.objects.count() == 0

    _blend_vs(ranker)
    overlap = _refused(start_at=now + timedelta(days=3), end_at=now + timedelta(days=30))
    assert "cannot overlap" in overlap["start_at"][0]
    assert Experiment.objects.count() == 1
    # Another surface is free; after the first one's end, this surface is free again.
    later = now + timedelta(days=15)
    experiment_create(
        name="after",
        surface=ExperimentSurface.USER,
        start_at=later,
        end_at=later + timedelta(days=7),
        arms=[ArmSpec("a", None, 50), ArmSpec("b", ranker.pk, 50)],
        created_by=None,
    )


def _serve_everyone(world) -> dict[int, Recommendation]:
    return {person.pk: _logged(recommend_for_user(user=person, k=5)) for person in world["people"]}


def test_online_metrics_per_arm_come_from_the_log_with_attribution_in_the_window(world):
    ranker = _ranker(8, "popularity")
    experiment = _blend_vs(ranker)
    answers = _serve_everyone(world)
    staff = StaffUserFactory()
    recommend_for_user(user=world["people"][0], k=5, requested_by=staff)  # a look-up: not counted
    clicked_person, bought_person = world["people"][1], world["people"][2]
    clicked_answer = answers[clicked_person.pk]
    shown = list(clicked_answer.items.order_by("position").values_list("item_id", flat=True))
    feedback_record(recommendation_id=clicked_answer.id, item_ids=shown[:2], kind="click", user=clicked_person)
    feedback_record(recommendation_id=clicked_answer.id, item_ids=shown[4:], kind="dismiss", user=clicked_person)
    bought_answer = answers[bought_person.pk]
    bought_item = bought_answer.items.order_by("position").first().item
    Activity.objects.create(
        user=bought_person,
        item=bought_item,
        kind=ActivityKind.PURCHASE,
        created_at=bought_answer.created_at + timedelta(hours=2),
    )
    Activity.objects.create(  # too late: outside the 24-hour window
        user=bought_person,
        item=bought_answer.items.order_by("position")[1].item,
        kind=ActivityKind.ADD_TO_CART,
        created_at=bought_answer.created_at + timedelta(hours=30),
    )

    figures = experiment_metrics_refresh(experiment_id=experiment.pk).metrics

    by_arm = {row["arm_id"]: row for row in figures["arms"]}
    for arm in experiment.arms.all():
        row = by_arm[arm.pk]
        people = [answer for answer in answers.values() if answer.arm_id == arm.pk]
        assert row["people"] == len(people)
        assert row["impressions"] == RecommendedItem.objects.filter(recommendation__in=people).count()
        assert row["items_shown"] == len(
            set(RecommendedItem.objects.filter(recommendation__in=people).values_list("item_id", flat=True))
        )
    clicked_arm, bought_arm = by_arm[clicked_answer.arm_id], by_arm[bought_answer.arm_id]
    assert clicked_arm["clicks"] == 2 and clicked_arm["dismissals"] == 1
    assert clicked_arm["rates"]["ctr"]["rate"] == pytest.approx(2 / clicked_arm["impressions"])
    assert bought_arm["purchases"] == 1 and bought_arm["carts"] == 0
    assert sum(row["impressions"] for row in figures["arms"]) == 32 * 5  # the staff look-up is not in it
    assert figures["verdict"]["state"] == "collecting"
    assert figures["plan"]["impressions_needed_per_arm"] > figures["plan"]["smallest_arm_impressions"]


def test_deleting_a_person_changes_the_figures_and_the_page_says_so(world, client):
    experiment = _blend_vs(_ranker(9, "popularity"))
    _serve_everyone(world)
    before = experiment_metrics_refresh(experiment_id=experiment.pk).metrics
    staff = StaffUserFactory()
    client.force_login(staff)

    user_delete(user=User.objects.get(pk=world["people"][7].pk))

    experiment.refresh_from_db()
    assert experiment.metrics_stale_since is not None
    page = client.get(reverse("recommendations:staff_experiment", args=[experiment.pk]))
    assert b"data-figures-changed" in page.content
    after = experiment_metrics_refresh(experiment_id=experiment.pk).metrics
    assert sum(row["people"] for row in after["arms"]) == sum(row["people"] for row in before["arms"]) - 1
    assert (
        b"data-figures-changed"
        not in client.get(reverse("recommendations:staff_experiment", args=[experiment.pk])).content
    )


def test_promoting_an_arm_activates_its_version_and_records_who_and_when(world):
    ranker = _ranker(10, "popularity")
    experiment = _blend_vs(ranker)
    staff = StaffUserFactory()
    arm = experiment.arms.get(ranker=ranker)

    experiment_promote(experiment=experiment, arm=arm, by=staff)

    experiment.refresh_from_db()
    assert RankerModel.objects.get(is_active=True) == ranker
    assert experiment.decision == ExperimentDecision.PROMOTED and experiment.promoted_arm == arm
    assert experiment.decided_by == staff and experiment.decided_at is not None
    assert experiment.end_at <= timezone.now()
    assert running_arms(surface=ExperimentSurface.USER) == []
    with pytest.raises(Exception, match="already promoted"):
        experiment_stop(experiment=experiment, by=staff)


def test_promoting_the_blend_arm_leaves_no_ranker_active(world):
    ranker = ranker_activate(ranker=_ranker(11, "popularity"))
    experiment = _blend_vs(ranker)

    experiment_promote(experiment=experiment, arm=experiment.arms.get(ranker=None), by=StaffUserFactory())

    assert not RankerModel.objects.filter(is_active=True).exists()


def test_staff_create_an_experiment_on_the_page_and_bad_input_is_a_form_error(world, client):
    ranker = _ranker(12, "popularity")
    client.force_login(StaffUserFactory())
    url = reverse("recommendations:staff_experiments")
    now = timezone.now()
    form = {
        "name": "popularity ranker",
        "surface": "user",
        "start_at": now.strftime("%Y-%m-%dT%H:%M"),
        "end_at": (now + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M"),
        "minimum_effect": "0.1",
        "alpha": "0.05",
        "power": "0.8",
        "attribution_hours": "24",
        "arm0_name": "control",
        "arm0_version": "blend",
        "arm0_share": "50",
        "arm1_name": "treatment",
        "arm1_version": str(ranker.pk),
        "arm1_share": "40",
    }

    refused = client.post(url, form)
    assert refused.status_code == 400
    assert "the shares sum to 90%, not 100%" in refused.content.decode()
    backwards = client.post(
        url, {**form, "arm1_share": "50", "end_at": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")}
    )
    assert backwards.status_code == 400 and "the end must be after the start" in backwards.content.decode()
    assert Experiment.objects.count() == 0

    created = client.post(url, {**form, "arm1_share": "50"})

    experiment = Experiment.objects.get()
    assert created.status_code == 302 and created["Location"] == reverse(
        "recommendations:staff_experiment", args=[experiment.pk]
    )
    assert [(arm.name, arm.ranker_id, arm.share) for arm in experiment.arms.order_by("position")] == [
        ("control", None, 50),
        ("treatment", ranker.pk, 50),
    ]
    page = client.get(created["Location"])
    assert page.status_code == 200 and b"running" in page.content
    assert b"ndcg@20 0.3700" in page.content  # the version's offline validation figure
    promoted = client.post(
        reverse("recommendations:staff_experiment_promote", args=[experiment.pk]),
        {"arm": str(experiment.arms.get(position=1).pk)},
    )
    assert promoted.status_code == 302
    assert RankerModel.objects.get(is_active=True) == ranker


def test_people_who_are_not_staff_cannot_see_or_change_experiments(world, client):
    experiment = _blend_vs(_ranker(13, "popularity"))
    client.force_login(world["people"][0])

    assert client.get(reverse("recommendations:staff_experiments")).status_code == 403
    assert client.get(reverse("recommendations:staff_experiment", args=[experiment.pk])).status_code == 403
    stop = client.post(reverse("recommendations:staff_experiment_stop", args=[experiment.pk]))
    assert stop.status_code == 403
    experiment.refresh_from_db()
    assert experiment.decision == ""


def test_the_replay_check_replays_past_answers_with_clicks_beside_the_validation_figure(world, client):
    ranker = _ranker(14, "popularity")
    for person in world["people"][:10]:
        answer = _logged(recommend_for_user(user=person, k=5, precomputed_list=False))
        first = answer.items.order_by("position").first()
        feedback_record(recommendation_id=answer.id, item_ids=[first.item_id], kind="click", user=person)

    check = replay_check_run(ranker_id=ranker.pk, k=5)

    figures = check.figures
    assert figures["answers"] == 10 and figures["clicked_items"] == 10
    # The blend served those answers and each click was its first item: replayed as of the same
    # moment, the blend finds every one of them in its top 5 (not always first: the order of
    # close scores computed as of then can differ from the live answer's).
    assert figures["serving"] == "the blend"
    assert figures["serving_hit"] == 1.0 and 0 < figures["serving_mrr"] <= 1.0
    assert 0.0 <= figures["candidate_hit"] <= 1.0
    client.force_login(StaffUserFactory())
    page = client.get(reverse("recommendations:staff_rankers")).content.decode()
    assert f"hit@5 {figures['candidate_hit']:.3f}" in page


def test_the_seeded_example_is_finished_simulated_labelled_and_never_serves(world, client):
    ranker_activate(ranker=_ranker(15, "popularity"))

    call_command("seed_example_experiment", "--people-per-arm", "3000")

    experiment = Experiment.objects.get()
    assert experiment.simulated and experiment.end_at < timezone.now()
    figures = experiment.metrics
    assert figures["simulated"]["click_rates"] == [0.05, pytest.approx(0.056)]
    assert [row["people"] for row in figures["arms"]] == [3000, 3000]
    assert figures["verdict"]["state"] in {"winner", "no_difference"}
    assert not Recommendation.objects.filter(experiment=experiment).exists()  # nothing was logged
    assert running_arms(surface=ExperimentSurface.USER) == []
    with pytest.raises(Exception, match="simulated"):
        experiment_promote(experiment=experiment, arm=experiment.arms.get(position=1), by=StaffUserFactory())
    client.force_login(StaffUserFactory())
    dashboard = client.get(reverse("recommendations:staff_dashboard")).content.decode()
    assert "data-simulated" in dashboard and "Verdict on simulated traffic" in dashboard and "<svg" in dashboard
    page = client.get(reverse("recommendations:staff_experiment", args=[experiment.pk])).content.decode()
    assert "Simulated traffic." in page and "(simulated)" in page
    listing = client.get(reverse("recommendations:staff_experiments")).content.decode()
    assert "data-simulated" in listing

    # Seeding again replaces the example; real experiments are not touched by it.
    call_command("seed_example_experiment")
    assert Experiment.objects.filter(simulated=True).count() == 1
