"""Experiments on free text whose arms name text model versions, against the real service,
database and encoder: a person's questions are answered in their arm's space (its query map and
its own item vectors), the log names the arm, bad arms are refused, promotion activates the
version, and the versions an experiment serves keep their item vectors."""

from datetime import timedelta
from typing import cast

import pytest
from django.urls import reverse
from django.utils import timezone

from catalog.models import Item, ItemVector
from catalog.services import item_save
from core.vector_wire import VectorDigest
from recommendations.experiments.services import (
    ArmSpec,
    experiment_create,
    experiment_metrics_refresh,
    experiment_promote,
)
from recommendations.ml.ranker import Ranker
from recommendations.models import (
    Experiment,
    ExperimentArm,
    ExperimentSurface,
    RankerModel,
    Recommendation,
    TextModel,
)
from recommendations.ranking.active import ranker_activate
from recommendations.serving.arms import arm_for_bucket, assignment_bucket, running_arms
from recommendations.serving.service import recommend_for_text
from recommendations.vectors import embedding
from recommendations.vectors.text_model import (
    items_behind,
    reset_text_models,
    text_model_activate,
    text_model_train,
    text_model_vectors_write,
)
from tests.factories import StaffUserFactory, UserFactory
from tests.recommendations.conftest import community_words_world_build
from tests.recommendations.test_experiments import assert_one_arm_lookup, experiment_refused
from tests.worlds import module_world

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_ranker_cache")]

MODEL = "all-MiniLM-L6-v2"
QUESTION = "hiking boots for a mountain trek"


def _world_build() -> dict:
    """The community-words catalog, and a text model trained on it (not active) whose item
    vectors are written: a version an experiment may name."""
    world = community_words_world_build()
    reset_text_models()
    version = text_model_train(activate=False)
    text_model_vectors_write(text_model=version)
    return {**world, "version": version}


_rows, _copy = module_world(_world_build)


@pytest.fixture
def world(_rows, db):
    reset_text_models()
    yield _copy(_rows)
    reset_text_models()


def _version_copy(version: TextModel, number: int, **fields) -> TextModel:
    """Another stored version (the same adapter: a trained version without the training)."""
    return TextModel.objects.create(
        **{
            "version": number,
            "algorithm": version.algorithm,
            "base_model": version.base_model,
            "dimensions": version.dimensions,
            "match_floor": version.match_floor,
            "artifact": version.artifact,
            **fields,
        }
    )


def _frozen_vs(version: TextModel, *, shares=(50, 50), later: timedelta = timedelta(0)) -> Experiment:
    now = timezone.now()
    return experiment_create(
        name="frozen encoder vs text model",
        surface=ExperimentSurface.TEXT,
        start_at=now - timedelta(minutes=1) + later,
        end_at=now + timedelta(days=14),
        arms=[
            ArmSpec(name="frozen", ranker_id=None, share=shares[0]),
            ArmSpec(name=f"v{version.version}", ranker_id=None, share=shares[1], text_model_id=version.pk),
        ],
        created_by=None,
    )


def _ask(**options):
    """A question answered without the floor and the popularity term: the catalog has no
    interactions (only words), and the frozen encoder's answers must not be empty to compare."""
    return recommend_for_text(text=QUESTION, match_floor=None, popularity_weight=0.0, **options)


def _ids(answer) -> list[int]:
    return [result.item.id for result in answer.results]


def _logged(answer) -> Recommendation:
    return Recommendation.objects.get(id=cast(str, answer.recommendation_id))


def test_each_person_gets_free_text_answers_in_their_arms_text_model_and_the_log_names_the_arm(world):
    version = world["version"]
    experiment = _frozen_vs(version)
    arms = running_arms(surface=ExperimentSurface.TEXT)
    # New people: no interest vector, so their answers are not tilted and compare exactly.
    people = UserFactory.create_batch(16)
    frozen = _ids(_ask(k=8, log=False, text_model="frozen"))

    answers = {}
    for person in people:
        expected = arm_for_bucket(arms, assignment_bucket(experiment_id=experiment.pk, person_id=person.pk))
        answer = _ask(user=person, k=8)
        logged = _logged(answer)
        assert (answer.experiment_id, answer.arm_id) == (experiment.pk, expected.arm_id)
        assert (logged.experiment_id, logged.arm_id, logged.user_id) == (experiment.pk, expected.arm_id, person.pk)
        assert expected.text_model_id in (None, version.pk)
        answers[person.pk] = (expected.text_model_id, answer)
    anonymous = _logged(_ask(k=8))
    assert anonymous.experiment_id is None and anonymous.arm_id is None  # visitors take no part

    # The version answers everyone once it is active: what its arm answered before, query and
    # items both from it (a query of one space searched among the other's items answers neither).
    text_model_activate(text_model=version)
    learned = _ids(_ask(k=8, log=False))
    assert learned != frozen
    assert {text_model_id for text_model_id, _answer in answers.values()} == {None, version.pk}
    for text_model_id, answer in answers.values():
        if text_model_id is None:
            assert _ids(answer) == frozen and not any("text model" in note for note in answer.notes)
        else:
            assert _ids(answer) == learned and any(f"text model v{version.version}" in note for note in answer.notes)
    # The frozen encoder's arm does not follow the active version.
    control = next(person for person in people if answers[person.pk][0] is None)
    assert _ids(_ask(user=control, k=8, log=False)) == frozen


def test_an_experiment_on_free_text_costs_a_signed_in_question_one_small_query(world, django_assert_num_queries):
    version = world["version"]
    person = UserFactory()
    _ask(k=5, log=False)  # warm: the encoder
    # Anonymous: the active text model; the semantic search (the table's size, then ef_search
    # and the search in a savepoint: 5); the candidates' vectors, their popularity, the page's
    # items and their community words ...
    with django_assert_num_queries(10) as anonymous:
        _ask(k=5, log=False)
    # ... a signed-in person also the running experiment's arms (none run) and their interest.
    with django_assert_num_queries(12) as outside:
        assert _ask(user=person, k=5, log=False).experiment_id is None
    experiment = _frozen_vs(version, shares=(1, 99))
    _ask(user=person, k=5, log=False)  # warm: the version's adapter

    # In an arm, the arm's row says which space answers: no query for the active text model.
    with django_assert_num_queries(11) as inside:
        answer = _ask(user=person, k=5, log=False)

    assert answer.experiment_id == experiment.pk
    assert_one_arm_lookup(outside, inside)
    assert not any(ExperimentArm._meta.db_table in query["sql"] for query in anonymous.captured_queries)


def _refused(**changes) -> dict[str, list[str]]:
    return experiment_refused(**{"name": "a text test", "surface": ExperimentSurface.TEXT, **changes})


def test_text_model_arms_that_cannot_serve_are_refused_and_nothing_is_saved(world):
    version = world["version"]
    no_vectors = _version_copy(version, 2)
    untrained = _version_copy(version, 3, artifact=b"")
    other_encoder = _version_copy(version, 4, vectors_written_at=timezone.now())
    TextModel.objects.filter(pk=other_encoder.pk).update(base_model="another-encoder")
    model = Ranker("logistic_regression", ["popularity"], {"mean": [0], "scale": [1], "coef": [1], "intercept": 0})
    ranker = RankerModel.objects.create(
        version=1, algorithm="logistic_regression", features=["popularity"], artifact=model.to_bytes()
    )

    def text_arm(text_model_id: int) -> list[ArmSpec]:
        return [ArmSpec("a", None, 50), ArmSpec("b", None, 50, text_model_id=text_model_id)]

    assert _refused(arms=text_arm(no_vectors.pk))["arms"] == [
        'arm b: text model v2 has no item vectors yet: write them first (admin, Text models, "Write the item vectors")'
    ]
    assert _refused(arms=text_arm(untrained.pk))["arms"] == ["arm b: text model v3 is not trained (no model stored)"]
    assert _refused(arms=text_arm(other_encoder.pk))["arms"] == [
        f"arm b: text model v4 adapts another-encoder, but free text is read by {MODEL} now"
    ]
    assert _refused(arms=text_arm(999_999))["arms"] == ["arm b: text model 999999 does not exist"]
    ranker_on_text = _refused(arms=[ArmSpec("a", None, 50), ArmSpec("b", ranker.pk, 50)])["arms"]
    assert ranker_on_text == [
        "arm b: free-text answers use no ranker: an experiment there compares text-model arms "
        "(a text model version, or none for the frozen encoder)"
    ]
    text_on_user = _refused(surface=ExperimentSurface.USER, arms=text_arm(version.pk))["arms"]
    assert text_on_user == [
        "arm b: personal recommendations do not read a text model: an experiment there compares rankers "
        "(a version, or none for the blend)"
    ]
    assert "no experiment can run on similar items" in _refused(surface=ExperimentSurface.SIMILAR)["arms"][0]
    assert Experiment.objects.count() == 0 and ExperimentArm.objects.count() == 0

    # Once its item vectors are written, the version may serve an arm.
    text_model_vectors_write(text_model=no_vectors)
    assert _frozen_vs(no_vectors).arms.get(position=1).text_model == no_vectors


def test_promoting_a_text_arm_activates_its_version_and_the_frozen_arm_leaves_none_active(world):
    version = world["version"]
    staff = StaffUserFactory()
    model = Ranker("logistic_regression", ["popularity"], {"mean": [0], "scale": [1], "coef": [1], "intercept": 0})
    ranker = ranker_activate(
        ranker=RankerModel.objects.create(
            version=1, algorithm="logistic_regression", features=["popularity"], artifact=model.to_bytes()
        )
    )
    first = _frozen_vs(version)

    experiment_promote(experiment=first, arm=first.arms.get(position=1), by=staff)

    assert TextModel.objects.get(is_active=True) == version
    assert running_arms(surface=ExperimentSurface.TEXT) == []
    second = _frozen_vs(version, later=timedelta(hours=1))  # scheduled after the first's end
    experiment_promote(experiment=second, arm=second.arms.get(position=0), by=staff)
    assert not TextModel.objects.filter(is_active=True).exists()
    # Free text's decisions leave personal recommendations' ranker as it was.
    assert RankerModel.objects.get(is_active=True) == ranker


def test_a_version_an_experiment_serves_keeps_its_item_vectors_current_while_others_are_activated(world):
    version = world["version"]
    experiment = _frozen_vs(version)
    # Embedded while the experiment runs and no version is active: the arm's version gets it.
    item = item_save(item=Item(external_id="late", title="Model A-99", category="Series A"))
    embedding.item_embeddings_refresh(item_ids=[item.id])
    # Made from the served vector as it is now (its digest, vectors.text_model.served_item_vectors).
    assert ItemVector.objects.get(item=item, model_name=version.vector_key).text_hash == (
        ItemVector.objects.filter(item=item, model_name=MODEL)
        .annotate(digest=VectorDigest("embedding"))
        .values_list("digest", flat=True)
        .get()
    )
    assert items_behind(version) == []

    # Two activations later it would be dropped as stale; named by the running experiment it stays.
    text_model_activate(text_model=_version_copy(version, 5))
    text_model_activate(text_model=_version_copy(version, 6))
    assert ItemVector.objects.filter(model_name=version.vector_key).count() == Item.objects.count()

    experiment_promote(
        experiment=experiment, arm=experiment.arms.get(position=0), by=StaffUserFactory()
    )  # the experiment ends
    text_model_activate(text_model=_version_copy(version, 7))
    assert not ItemVector.objects.filter(model_name=version.vector_key).exists()
    version.refresh_from_db()
    assert version.vectors_written_at is None  # an experiment can no longer name it until written again


def test_staff_create_a_free_text_experiment_on_the_page_and_see_its_text_model(world, client):
    version = world["version"]
    no_vectors = _version_copy(version, 8)
    client.force_login(StaffUserFactory())
    url = reverse("recommendations:staff_experiments")
    now = timezone.now()
    form = {
        "name": "learned text",
        "surface": "text",
        "start_at": (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"),
        "end_at": (now + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M"),
        "minimum_effect": "0.1",
        "alpha": "0.05",
        "power": "0.8",
        "attribution_hours": "24",
        "arm0_name": "control",
        "arm0_version": "frozen",
        "arm0_share": "50",
        "arm1_name": "treatment",
        "arm1_version": f"text-{version.pk}",
        "arm1_share": "50",
    }
    offered = client.get(url).content.decode()
    assert f'value="text-{version.pk}"' in offered and "no item vectors yet" in offered

    blend = client.post(url, {**form, "arm0_version": "blend"})
    assert blend.status_code == 400
    assert "arm 1: free text is answered by a text model" in blend.content.decode()
    on_user = client.post(url, {**form, "surface": "user"})
    assert on_user.status_code == 400 and "arm 2: personal recommendations are ordered by a ranker" in (
        on_user.content.decode()
    )
    without_vectors = client.post(url, {**form, "arm1_version": f"text-{no_vectors.pk}"})
    assert without_vectors.status_code == 400 and "text model v8 has no item vectors yet" in (
        without_vectors.content.decode()
    )
    assert Experiment.objects.count() == 0

    created = client.post(url, form)

    experiment = Experiment.objects.get()
    assert created.status_code == 302
    assert [(arm.name, arm.ranker_id, arm.text_model_id) for arm in experiment.arms.order_by("position")] == [
        ("control", None, None),
        ("treatment", None, version.pk),
    ]
    page = client.get(created["Location"]).content.decode()
    assert f"text model v{version.version} (linear_adapter over {MODEL})" in page
    assert "the frozen encoder" in page
    assert f"ndcg@20 {version.validation_metrics['ndcg@20']:.4f}" in page
    listed = client.get(url).content.decode()
    assert f"treatment: text model v{version.version}" in listed and "control: the frozen encoder" in listed
    admin_page = client.get(reverse("admin:recommendations_experiment_change", args=[experiment.pk]))
    assert f"text model v{version.version}" in admin_page.content.decode()

    # The metrics count the experiment's free-text answers.
    people = UserFactory.create_batch(6)
    for person in people:
        _ask(user=person, k=5)
    figures = experiment_metrics_refresh(experiment_id=experiment.pk).metrics
    assert sum(row["people"] for row in figures["arms"]) == 6
    assert sum(row["impressions"] for row in figures["arms"]) == 6 * 5
    assert {row["version"] for row in figures["arms"]} <= {"the frozen encoder", str(version)}
