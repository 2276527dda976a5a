"""Community text: items described by what people wrote about them (the real encoder, MiniLM;
real PostgreSQL; tasks run in-process here, the worker's part is in test_worker.py)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalog.models import Item, ItemVector
from recommendations.ml.encoder import get_encoder
from recommendations.models import CommunityTextVector, CommunityVector
from recommendations.serving.service import recommend_for_text, similar_items
from recommendations.tasks import sweep_pending_embeddings
from recommendations.vectors import embedding
from recommendations.vectors.community import (
    WeightRules,
    community_evidence,
    community_vector,
    community_weights,
    served_vector,
)
from tests.api.conftest import client_for
from tests.factories import StaffUserFactory, UserFactory
from users.community import CommunityText, community_texts, items_described_by
from users.models import Activity, HelpfulVote
from users.services import activity_delete, activity_record, helpful_vote_record, user_data_export, user_delete

pytestmark = pytest.mark.django_db(transaction=True)

RULES = WeightRules(
    half_life_days=365.0, low_rating=2.0, low_rating_weight=-0.5, person_cap=1.0, spread_limit=20, max_texts=500
)
NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _weight_two(settings):
    # These tests read the served vector at COMMUNITY_WEIGHT 2 (P4's reference weight), not the
    # default 0.5: the words move the items far enough to see in a small fixture.
    settings.RECOMMENDER = {**settings.RECOMMENDER, "COMMUNITY_WEIGHT": 2.0}


def _text(activity_id, user_id, *, kind="review", rating=None, days_old=0.0, words="good", votes=(0, 0)):
    return CommunityText(
        activity_id=activity_id,
        item_id=1,
        user_id=user_id,
        kind=kind,
        text=words,
        text_hash=str(activity_id),
        rating=rating,
        created_at=NOW - timedelta(days=days_old),
        helpful=votes[0],
        unhelpful=votes[1],
    )


def _query(text: str) -> np.ndarray:
    return get_encoder().encode([text], kind="query").vectors[0]


def _served(item: Item) -> np.ndarray:
    return np.asarray(ItemVector.objects.get(item=item, model_name="all-MiniLM-L6-v2").embedding)


def _catalog(item: Item) -> np.ndarray:
    return np.asarray(ItemVector.objects.get(item=item, model_name="all-MiniLM-L6-v2").text_embedding)


def _item(external_id: str, title: str, description: str) -> Item:
    return Item.objects.create(external_id=external_id, title=title, description=description, category="Outdoor")


def _batch() -> dict:
    return embedding.embeddings_process_pending()


# --- weights: numbers only ----------------------------------------------------------------------


def test_one_person_weighs_at_most_the_person_cap_on_one_item_however_much_they_write():
    texts = [_text(index, user_id=7) for index in range(100)] + [_text(1000, user_id=8)]

    weights = community_weights(texts, rules=RULES, spread={})

    assert sum(weights[:100]) == pytest.approx(1.0)
    assert weights[100] == pytest.approx(1.0)  # the one honest review counts as much as the 100


def test_a_text_one_person_gave_to_many_items_counts_the_spread_limit_over_that_many():
    texts = [_text(1, user_id=7, words="Buy cheap pills"), _text(2, user_id=8, words="lovely")]

    weights = community_weights(texts, rules=RULES, spread={(7, "buy cheap pills"): 200})

    assert weights == [pytest.approx(20 / 200), pytest.approx(1.0)]
    # Alone on an item, the down-weighted spam moves it a tenth as far as a real text would.
    vector = community_vector(np.array([[1.0, 0.0]]), weights[:1])
    assert np.linalg.norm(vector) == pytest.approx(0.1)


def test_low_rated_words_count_against_and_old_words_fade():
    texts = [_text(1, 7, rating=1.0), _text(2, 8, rating=5.0), _text(3, 9, days_old=365.0), _text(4, 10, kind="search")]

    weights = community_weights(texts, rules=RULES, spread={})

    assert weights == [pytest.approx(-0.5), pytest.approx(1.0), pytest.approx(0.5), pytest.approx(0.6)]


def test_words_others_found_helpful_weigh_more_and_unhelpful_ones_less_even_past_the_person_cap():
    texts = [_text(1, 7), _text(2, 8, votes=(3, 0)), _text(3, 9, votes=(0, 3)), _text(4, 10, votes=(2, 2))]

    weights = community_weights(texts, rules=RULES, spread={})

    # 2 x (helpful + 1) / (votes + 2): no votes and as many each way leave a text as it was.
    assert weights == [pytest.approx(1.0), pytest.approx(1.6), pytest.approx(0.4), pytest.approx(1.0)]


def test_a_review_people_found_helpful_pulls_its_item_towards_its_words_through_the_api():
    tent = _item("tent", "Dome tent", "Two-person dome tent.")
    dry, leaky = UserFactory(), UserFactory()
    praised = activity_record(user=dry, kind="review", item=tent, text="Kept us dry through three days of storms.")
    activity_record(user=leaky, kind="review", item=tent, text="The zip broke on the first morning.")
    _batch()
    storm = _query("a tent that stays dry in a storm")
    before = float(np.dot(_served(tent), storm))

    for voter in UserFactory.create_batch(3):
        response = client_for(voter).post(f"/api/v1/activities/{praised.id}/helpful/", {"helpful": True}, format="json")
        assert response.status_code == 200, response.content
    assert response.json() == {"activity_id": praised.id, "helpful": True, "helpful_count": 3, "unhelpful_count": 0}
    assert Item.objects.get(id=tent.id).community_stale
    _batch()

    weights = {entry["activity"]: entry["weight"] for entry in CommunityVector.objects.get(item=tent).texts}
    assert weights[praised.id] == pytest.approx(1.6)
    assert float(np.dot(_served(tent), storm)) > before


def test_deleting_a_voter_takes_their_votes_out_of_the_item_and_the_export_lists_them():
    tent = _item("tent", "Dome tent", "Two-person dome tent.")
    review = activity_record(user=UserFactory(), kind="review", item=tent, text="Kept us dry in the rain.")
    voter = UserFactory()
    helpful_vote_record(user=voter, activity_id=review.id, helpful=False)
    _batch()
    assert CommunityVector.objects.get(item=tent).texts[0]["weight"] == pytest.approx(2 / 3, abs=1e-4)

    (vote,) = user_data_export(user=voter)["helpful_votes"]
    assert (vote["activity_id"], vote["item"]["external_id"], vote["helpful"]) == (review.id, "tent", False)

    user_delete(user=voter)

    # In the same call: the review weighs as if the vote had never been.
    assert CommunityVector.objects.get(item=tent).texts[0]["weight"] == pytest.approx(1.0)
    assert not Item.objects.get(id=tent.id).community_stale


def test_helpful_votes_refuse_bad_input_with_a_clear_answer():
    tent = _item("tent", "Dome tent", "Two-person dome tent.")
    writer, other = UserFactory(), UserFactory()
    review = activity_record(user=writer, kind="review", item=tent, text="Roomy.")
    viewed = activity_record(user=writer, kind="view", item=tent)
    url = f"/api/v1/activities/{review.id}/helpful/"

    own = client_for(writer).post(url, {"helpful": True}, format="json")
    not_a_boolean = client_for(other).post(url, {"helpful": "yes"}, format="json")
    missing = client_for(other).post(url, {}, format="json")
    not_words = client_for(other).post(f"/api/v1/activities/{viewed.id}/helpful/", {"helpful": True}, format="json")
    anonymous = client_for(None).post(url, {"helpful": True}, format="json")

    assert own.status_code == 400 and "your own" in own.json()["error"]["message"]
    assert not_a_boolean.status_code == 400 and "helpful" in not_a_boolean.json()["error"]["fields"]
    assert missing.status_code == 400 and "helpful" in missing.json()["error"]["fields"]
    assert not_words.status_code == 404
    assert anonymous.status_code == 401
    assert not HelpfulVote.objects.exists()
    # Voting again replaces the vote: one row a person a text.
    client_for(other).post(url, {"helpful": True}, format="json")
    again = client_for(other).post(url, {"helpful": False}, format="json")
    assert again.json()["helpful_count"] == 0 and again.json()["unhelpful_count"] == 1
    assert HelpfulVote.objects.get().helpful is False


def test_the_item_page_offers_helpful_buttons_on_other_peoples_reviews_and_records_the_vote():
    tent = _item("tent", "Dome tent", "Two-person dome tent.")
    writer, reader = UserFactory(), UserFactory()
    review = activity_record(user=writer, kind="review", item=tent, text="Roomy for two.")
    page = Client()
    page.force_login(reader)
    vote_url = reverse("recommendations:review_helpful", args=[tent.id, review.id])

    shown = page.get(reverse("recommendations:item", args=[tent.id]))
    voted = page.post(vote_url, {"helpful": "yes"})
    after = page.get(reverse("recommendations:item", args=[tent.id]))

    assert vote_url in shown.content.decode()
    assert voted.status_code == 302 and HelpfulVote.objects.get(user=reader).helpful is True
    assert "1 found it helpful, 0 not." in after.content.decode()
    page.force_login(writer)
    assert vote_url not in page.get(reverse("recommendations:item", args=[tent.id])).content.decode()


def test_the_served_vector_is_the_catalog_vector_without_community_text():
    catalog = np.array([1.0, 0.0], dtype=np.float32)

    assert np.array_equal(served_vector(catalog, None, 2.0), catalog)
    assert np.allclose(served_vector(catalog, np.array([0.0, 0.5]), 2.0), np.array([1.0, 1.0]) / np.sqrt(2))


# --- built from the database, with the real encoder ---------------------------------------------


def test_a_review_describes_its_item_and_free_text_answers_quote_it():
    tent = _item("tent", "Dome tent", "Two-person dome tent with aluminium poles.")
    _item("stove", "Camping stove", "A gas stove that folds small.")
    writer = UserFactory()
    activity_record(user=writer, kind="review", item=tent, text="Kept me dry through three nights of heavy rain.")
    assert Item.objects.get(id=tent.id).community_stale

    done = _batch()

    assert done["community"] >= 1 and not Item.objects.get(id=tent.id).community_stale
    community = CommunityVector.objects.get(item=tent, model_name="all-MiniLM-L6-v2")
    assert community.n_texts == 1 and community.n_people == 1 and community.applied_weight == 2.0
    assert CommunityTextVector.objects.filter(activity__item=tent).count() == 1
    question = _query("stays dry in heavy rain")
    assert float(question @ _served(tent)) > float(question @ _catalog(tent)) + 0.1
    asker = UserFactory()
    answer = recommend_for_text(text="stays dry in heavy rain", user=asker, k=2, match_floor=None, log=False)
    assert answer.results[0].item.id == tent.id
    assert answer.results[0].reason == 'people say "Kept me dry through three nights of heavy rain."'


def test_the_writers_own_words_are_never_quoted_to_them_as_what_people_say():
    tent = _item("tent", "Dome tent", "Two-person dome tent with aluminium poles.")
    writer = UserFactory()
    activity_record(user=writer, kind="review", item=tent, text="Kept me dry through three nights of heavy rain.")
    _batch()

    answer = recommend_for_text(text="stays dry in heavy rain", user=writer, k=1, match_floor=None, log=False)

    assert "people say" not in answer.results[0].reason


def test_a_low_rated_review_pushes_the_item_away_from_its_words_and_ignoring_ratings_would_pull(settings):
    tent = _item("tent", "Dome tent", "Two-person dome tent with aluminium poles.")
    writer = UserFactory()
    activity_record(user=writer, kind="review", item=tent, text="It leaked in the first rain.", rating=1.0)
    _batch()
    question = _query("waterproof tent for rain")
    catalog, served = float(question @ _catalog(tent)), float(question @ _served(tent))

    settings.RECOMMENDER = {**settings.RECOMMENDER, "COMMUNITY_LOW_RATING_WEIGHT": 1.0}
    Item.objects.filter(id=tent.id).update(community_stale=True)
    _batch()
    ignoring_ratings = float(question @ _served(tent))

    assert served < catalog and served < ignoring_ratings
    # Never quoted as what people say: it counts against the item.
    settings.RECOMMENDER = {**settings.RECOMMENDER, "COMMUNITY_LOW_RATING_WEIGHT": -0.5}
    Item.objects.filter(id=tent.id).update(community_stale=True)
    _batch()
    answer = recommend_for_text(text="leaked in the rain", k=1, match_floor=None, log=False)
    assert "people say" not in answer.results[0].reason


def test_a_search_followed_by_a_click_within_the_window_describes_the_clicked_item():
    mug = _item("mug", "Enamel mug", "A 300 ml mug.")
    later = _item("lamp", "Head lamp", "A bright lamp.")
    person = UserFactory()
    start = timezone.now() - timedelta(hours=2)
    search = activity_record(user=person, kind="search", text="gift for a coffee lover", created_at=start)
    activity_record(user=person, kind="click", item=mug, created_at=start + timedelta(minutes=2))
    activity_record(user=person, kind="purchase", item=later, created_at=start + timedelta(minutes=30))

    texts = community_texts(item_ids=[mug.id, later.id])

    assert [(text.item_id, text.activity_id, text.kind) for text in texts] == [(mug.id, search.id, "search")]
    assert Item.objects.get(id=mug.id).community_stale and not Item.objects.get(id=later.id).community_stale
    assert items_described_by(user_id=person.id) == {mug.id}


def test_an_item_nobody_wrote_about_is_served_by_its_catalog_text():
    lamp = _item("lamp", "Head lamp", "A bright lamp for night hikes.")
    _item("tent", "Dome tent", "Two-person dome tent.")
    _batch()

    assert not CommunityVector.objects.filter(item=lamp).exists()
    assert np.allclose(_served(lamp), _catalog(lamp))
    assert (
        recommend_for_text(text="light for walking at night", k=1, match_floor=None, log=False).results[0].item == lamp
    )
    assert similar_items(item=lamp, k=1, log=False).results


def test_deleting_a_person_removes_their_words_from_every_community_vector_and_the_export_lists_the_items():
    tent, stove, lamp = (
        _item("tent", "Dome tent", "Two-person dome tent."),
        _item("stove", "Camping stove", "A gas stove."),
        _item("lamp", "Head lamp", "A bright lamp."),
    )
    leaving, staying = UserFactory(), UserFactory()
    activity_record(user=leaving, kind="review", item=tent, text="Survived a storm on the ridge.")
    activity_record(user=leaving, kind="tag", item=stove, text="boils fast")
    start = timezone.now() - timedelta(hours=1)
    activity_record(user=leaving, kind="search", text="light for night walks", created_at=start)
    activity_record(user=leaving, kind="click", item=lamp, created_at=start + timedelta(minutes=1))
    activity_record(user=staying, kind="review", item=tent, text="Roomy for two people.")
    _batch()

    export = user_data_export(user=leaving)
    assert [(entry["item"]["external_id"], entry["in_community_vector"]) for entry in export["community_text"]] == [
        ("tent", True),
        ("stove", True),
        ("lamp", True),
    ]
    assert user_data_export(user=staying)["community_text"] == [
        {"item": {"id": tent.id, "external_id": "tent", "title": "Dome tent"}, "in_community_vector": True}
    ]

    leaving_id = leaving.id
    user_delete(user=leaving)

    # In the same call, no batch run: what is left is the staying person's words only.
    tent_vector = CommunityVector.objects.get(item=tent)
    assert tent_vector.n_texts == 1 and {entry["user"] for entry in tent_vector.texts} == {staying.id}
    words = get_encoder().encode(["Roomy for two people."], kind="passage").vectors[0]
    assert float(np.dot(np.asarray(tent_vector.embedding), words)) == pytest.approx(1.0, abs=1e-4)
    assert not CommunityVector.objects.filter(item__in=[stove, lamp]).exists()
    assert np.allclose(_served(stove), _catalog(stove)) and np.allclose(_served(lamp), _catalog(lamp))
    assert not CommunityVector.objects.filter(texts__contains=[{"user": leaving_id}]).exists()
    assert not Item.objects.filter(community_stale=True).exists()


def test_deleting_an_activity_marks_its_item_and_the_batch_rebuilds_it():
    tent = _item("tent", "Dome tent", "Two-person dome tent.")
    person = UserFactory()
    review = activity_record(user=person, kind="review", item=tent, text="Survived a storm on the ridge.")
    _batch()
    assert CommunityVector.objects.filter(item=tent).exists()

    activity_delete(activity=review)

    assert Item.objects.get(id=tent.id).community_stale
    _batch()
    assert not CommunityVector.objects.filter(item=tent).exists()
    assert np.allclose(_served(tent), _catalog(tent))


@pytest.mark.parametrize("how", ["delete page", "delete selected"])
def test_staff_deleting_a_review_in_the_admin_takes_its_words_out_of_the_item_too(how):
    tent = _item("tent", "Dome tent", "Two-person dome tent.")
    review = activity_record(user=UserFactory(), kind="review", item=tent, text="Leaked in the first rain.")
    _batch()
    assert CommunityVector.objects.filter(item=tent).exists()
    staff = Client()
    staff.force_login(StaffUserFactory(is_superuser=True))

    if how == "delete page":
        response = staff.post(reverse("admin:users_activity_delete", args=[review.id]), {"post": "yes"})
    else:
        response = staff.post(
            reverse("admin:users_activity_changelist"),
            {"action": "delete_selected", "_selected_action": [review.id], "post": "yes"},
        )

    assert response.status_code == 302 and not Activity.objects.filter(id=review.id).exists()
    assert Item.objects.get(id=tent.id).community_stale  # the admin's own delete left it unmarked
    _batch()
    assert not CommunityVector.objects.filter(item=tent).exists()
    assert np.allclose(_served(tent), _catalog(tent))
    # Staff read what people did and may delete it, never rewrite it: an edit would bypass the
    # vectors, the interest and the community text a write sets off.
    kept = activity_record(user=UserFactory(), kind="review", item=tent, text="Roomy for two.")
    edited = staff.post(reverse("admin:users_activity_change", args=[kept.id]), {"text": "Rewritten by staff."})
    assert edited.status_code == 403 and Activity.objects.get(id=kept.id).text == "Roomy for two."
    assert staff.post(reverse("admin:users_activity_add"), {}).status_code == 403


def test_the_sweep_heals_stale_items_and_recombines_after_the_weight_changes(settings):
    tent = _item("tent", "Dome tent", "Two-person dome tent.")
    person = UserFactory()
    # Written as an import or a lost task would leave it: the row and the mark, nothing built.
    Activity.objects.create(
        user=person, kind="review", item=tent, text="Survived a storm.", created_at=timezone.now(), text_hash="x"
    )
    Item.objects.filter(id=tent.id).update(community_stale=True)
    assert embedding.embeddings_waiting_count()["community"] == 1

    assert sweep_pending_embeddings() is True  # eager here: the batch runs at once

    assert CommunityVector.objects.get(item=tent).applied_weight == 2.0
    with_two = _served(tent)
    settings.RECOMMENDER = {**settings.RECOMMENDER, "COMMUNITY_WEIGHT": 0.5}
    assert embedding.embeddings_waiting_count()["community_weight"] == 1
    assert sweep_pending_embeddings() is True
    assert CommunityVector.objects.get(item=tent).applied_weight == 0.5
    assert not np.allclose(_served(tent), with_two)
    assert embedding.embeddings_waiting_count()["community_weight"] == 0


def test_an_item_whose_text_is_embedded_again_keeps_its_community_words():
    from catalog.services import item_save

    tent = _item("tent", "Dome tent", "Two-person dome tent.")
    activity_record(user=UserFactory(), kind="review", item=tent, text="Survived a storm on the ridge.")
    _batch()
    before = _catalog(tent)

    tent.description = "Two-person dome tent, green."
    item_save(item=tent)

    assert not np.allclose(_catalog(tent), before)  # the catalog vector is new ...
    assert not np.allclose(_served(tent), _catalog(tent))  # ... and the community words still count


def test_community_evidence_counts_texts_and_people_for_the_ranker():
    tent = _item("tent", "Dome tent", "Two-person dome tent.")
    stove = _item("stove", "Camping stove", "A gas stove.")
    for words in ("Survived a storm.", "Roomy tent."):
        activity_record(user=UserFactory(), kind="review", item=tent, text=words)
    _batch()

    evidence = community_evidence(item_ids=[tent.id, stove.id], model_name="all-MiniLM-L6-v2")

    assert set(evidence) == {tent.id}
    assert evidence[tent.id].n_texts == 2 and evidence[tent.id].n_people == 2
    assert -1.0 <= evidence[tent.id].agreement <= 1.0


def test_building_many_items_encodes_their_texts_in_bulk(monkeypatch):
    from recommendations.ml import encoder as encoder_module

    real = get_encoder()
    calls = []

    class Counting:
        name, dimensions = real.name, real.dimensions

        def encode(self, texts, **kwargs):
            calls.append((len(texts), kwargs["kind"]))
            return real.encode(texts, **kwargs)

    items = [_item(f"item-{index}", f"Item {index}", "A thing.") for index in range(30)]
    people = UserFactory.create_batch(3)
    for index, item in enumerate(items):
        for person in people:
            Activity.objects.create(
                user=person,
                kind="search",
                text=f"question {index} of {person.id}",
                created_at=timezone.now() - timedelta(minutes=5),
                text_hash="q",
            )
            Activity.objects.create(user=person, kind="click", item=item, created_at=timezone.now())
    Item.objects.update(community_stale=True)
    monkeypatch.setattr(encoder_module, "get_encoder", lambda *args: Counting())

    from recommendations.vectors.community import community_process_stale

    community_process_stale(model_name=real.name)

    passages = [count for count, kind in calls if kind == "passage"]
    # Every question of these people is followed within the window by their clicks: 90 distinct
    # texts, encoded in one call (MiniLM has no stored query vectors for them: rows made raw).
    assert passages == [90]
    assert CommunityVector.objects.count() == 30


def test_staff_see_an_items_community_texts_with_their_weights_and_its_vector_status(client, staff_user):
    from django.urls import reverse

    tent = _item("tent", "Dome tent", "Two-person dome tent.")
    activity_record(
        user=UserFactory(display_name="hiker"), kind="review", item=tent, text="Survived a storm.", rating=5
    )
    activity_record(user=UserFactory(display_name="camper"), kind="review", item=tent, text="It leaked.", rating=1)
    _batch()
    client.force_login(staff_user)

    item_page = client.get(reverse("admin:catalog_item_change", args=[tent.id])).content.decode()
    vector = CommunityVector.objects.get(item=tent)
    vector_page = client.get(reverse("admin:recommendations_communityvector_change", args=[vector.id]))

    assert "2 texts by 2 people, served with weight 2" in item_page and "up to date" in item_page
    page = vector_page.content.decode()
    assert vector_page.status_code == 200
    assert "Survived a storm." in page and "+1.000" in page and "hiker" in page
    assert "It leaked." in page and "-0.500" in page and "camper" in page
    assert "served: catalog vector + 2 x this vector" in page
    activity_record(user=UserFactory(), kind="tag", item=tent, text="roomy")
    assert "waiting for the worker" in client.get(reverse("admin:catalog_item_change", args=[tent.id])).content.decode()
    assert client.get(reverse("admin:recommendations_communityvector_changelist")).status_code == 200


def test_an_item_found_by_meaning_for_a_person_is_explained_by_what_others_wrote_about_it():
    from recommendations.serving.service import recommend_for_user

    bought = _item("dome", "Dome tent", "Two-person dome tent.")
    other_tent = _item("tunnel", "Tunnel tent", "Three-person tunnel tent.")
    _item("espresso", "Espresso machine", "Makes coffee.")
    person, other = UserFactory(), UserFactory()
    activity_record(user=other, kind="review", item=other_tent, text="Pitched it in five minutes in the wind.")
    activity_record(user=person, kind="purchase", item=bought)
    _batch()
    embedding.user_interest_refresh(user_id=person.id)

    answer = recommend_for_user(user=person, k=3, precomputed_list=False, log=False)

    found = {result.item.id: result for result in answer.results}
    assert "semantic" in found[other_tent.id].sources
    assert found[other_tent.id].reason == 'people say "Pitched it in five minutes in the wind."'


def test_served_vectors_without_a_text_are_what_the_batch_builds_once_that_text_is_gone():
    from recommendations.vectors.community import served_vectors_without

    tent = _item("tent", "Dome tent", "Two-person dome tent.")
    stove = _item("stove", "Camping stove", "A small gas stove.")
    written = timezone.now()
    # Two people, one text each, written at the same moment: each weighs 1, nothing fades.
    kept = Activity.objects.create(
        user=UserFactory(), kind="tag", item=tent, text="survived a storm", created_at=written
    )
    hidden = Activity.objects.create(user=UserFactory(), kind="tag", item=tent, text="very light", created_at=written)
    Item.objects.filter(id__in=[tent.id, stove.id]).update(community_stale=True)
    _batch()
    served_with_both = _served(tent)

    recombined = served_vectors_without(model_name="all-MiniLM-L6-v2", activity_ids=[hidden.id])

    # Only the item the hidden text describes; the stored vectors are left as they were.
    assert list(recombined) == [tent.id]
    assert np.allclose(_served(tent), served_with_both)
    activity_delete(activity=hidden)
    _batch()
    assert CommunityVector.objects.get(item=tent).texts[0]["activity"] == kept.id
    assert np.allclose(recombined[tent.id], _served(tent), atol=1e-5)
