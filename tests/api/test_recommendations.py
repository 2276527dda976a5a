"""Recommendations over the API on a small catalog with known answers (real encoder, real model)."""

import dataclasses

import pytest

from catalog.models import Item
from core.conf import recommender_settings
from recommendations.ml.model_cards import MODEL_CARDS, model_card
from recommendations.models import Feedback, Recommendation, RecommendedItem
from tests.api.conftest import client_for, error_of
from users.models import Activity

pytestmark = pytest.mark.django_db


def _ids(response) -> list[str]:
    return [result["item"]["external_id"] for result in response.json()["results"]]


def test_a_person_gets_what_similar_people_bought_with_reason_and_sources(world):
    hiker = world["people"]["hiker2"]

    response = client_for(hiker).get("/api/v1/recommendations/?k=3")

    body = response.json()
    assert response.status_code == 200, body
    assert body["results"][0]["item"]["external_id"] == "stove"
    assert "behaviour" in body["results"][0]["sources"]
    assert body["results"][0]["reason"]
    assert body["ranker"] and isinstance(body["fallback"], bool)
    assert not {"boots", "tent", "retired"} & set(_ids(response))  # seen and inactive items never come back
    assert Recommendation.objects.filter(id=body["recommendation_id"], user=hiker).exists()


def test_filters_limit_the_answer(world):
    client = client_for(world["people"]["hiker2"])

    kitchen = client.get("/api/v1/recommendations/?k=5&category=Kitchen")
    cheap = client.get("/api/v1/recommendations/?k=5&price_max=50")
    tagged = client.get("/api/v1/recommendations/?k=5&tags=tea&tags=camping")

    assert set(_ids(kitchen)) == {"kettle", "teapot"}
    assert set(_ids(cheap)) <= {"stove", "kettle"}
    assert set(_ids(tagged)) == {"stove", "kettle", "teapot"}


def test_pages_follow_each_other_without_overlap(world):
    client = client_for(world["people"]["hiker2"])

    first = client.get("/api/v1/recommendations/?k=1").json()
    second = client.get(f"/api/v1/recommendations/?k=1&offset={first['next_offset']}").json()

    assert first["next_offset"] == 1
    assert second["results"][0]["position"] == 1
    assert first["results"][0]["item"]["id"] != second["results"][0]["item"]["id"]


def test_staff_may_ask_for_anyones_recommendations(world, staff):
    hiker = world["people"]["hiker2"]

    response = client_for(staff).get(f"/api/v1/recommendations/?user={hiker.id}&k=1")

    assert response.status_code == 200
    assert Recommendation.objects.get(id=response.json()["recommendation_id"]).user == hiker


def test_a_staff_look_up_is_logged_as_one_naming_who_asked(world, staff):
    hiker = world["people"]["hiker2"]

    looked_up = client_for(staff).get(f"/api/v1/recommendations/?user={hiker.id}&k=1").json()
    own = client_for(hiker).get("/api/v1/recommendations/?k=1").json()

    staff_row = Recommendation.objects.get(id=looked_up["recommendation_id"])
    assert (staff_row.context, staff_row.requested_by) == ("staff", staff)
    own_row = Recommendation.objects.get(id=own["recommendation_id"])
    assert (own_row.context, own_row.requested_by) == ("user", None)


def test_a_staff_look_up_is_not_in_the_persons_export(world, staff):
    hiker = world["people"]["hiker2"]
    looked_up = client_for(staff).get(f"/api/v1/recommendations/?user={hiker.id}&k=1").json()
    own = client_for(hiker).get("/api/v1/recommendations/?k=1").json()

    exported = client_for(hiker).get("/api/v1/me/export/").json()

    ids = {row["id"] for row in exported["recommendations"]}
    assert own["recommendation_id"] in ids
    assert looked_up["recommendation_id"] not in ids


@pytest.mark.parametrize("who", ["hiker2", "staff"])
def test_feedback_on_a_staff_look_up_is_refused_like_someone_elses(world, staff, who):
    hiker = world["people"]["hiker2"]
    looked_up = client_for(staff).get(f"/api/v1/recommendations/?user={hiker.id}&k=1").json()
    body = {
        "recommendation_id": looked_up["recommendation_id"],
        "kind": "dismiss",
        "item_ids": [looked_up["results"][0]["item"]["id"]],
    }

    response = client_for(staff if who == "staff" else hiker).post(
        "/api/v1/recommendations/feedback/", body, format="json"
    )

    assert response.status_code == 404
    assert error_of(response)["message"] == "No recommendation with this id."
    assert not Feedback.objects.exists()
    assert not Activity.objects.filter(kind="dismiss").exists()


def test_staff_asking_for_an_unknown_person_is_404(staff):
    response = client_for(staff).get("/api/v1/recommendations/?user=987654")

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [("k=0", "k"), ("k=101", "k"), ("offset=-1", "offset"), ("offset=501", "offset"), ("price_min=x", "price_min")],
)
def test_invalid_parameters_are_400_naming_them(person, query, field):
    response = client_for(person).get(f"/api/v1/recommendations/?{query}")

    assert response.status_code == 400
    assert field in error_of(response)["fields"]


def test_a_price_range_upside_down_is_400(person):
    response = client_for(person).get("/api/v1/recommendations/?price_min=10&price_max=5")

    assert "price_max" in error_of(response)["fields"]


def test_anyone_may_ask_in_free_text(world):
    response = client_for(None).post(
        "/api/v1/recommendations/text/", {"text": "I want to brew loose-leaf tea", "k": 2}, format="json"
    )

    body = response.json()
    assert response.status_code == 200, body
    assert set(_ids(response)) == {"teapot", "kettle"}
    assert body["results"][0]["sources"] == ["semantic"]
    assert body["match"] == "close"
    assert body["results"][0]["reason"].startswith(("named ", "says ", "tagged "))
    assert "I want to brew loose-leaf tea" not in body["results"][0]["reason"]
    assert Recommendation.objects.get(id=body["recommendation_id"]).user is None


def test_free_text_below_the_models_match_floor_answers_match_none_with_popular_items(world, monkeypatch):
    name = recommender_settings().serving_model
    monkeypatch.setitem(MODEL_CARDS, name, dataclasses.replace(model_card(name), match_floor=0.99))

    response = client_for(None).post(
        "/api/v1/recommendations/text/", {"text": "I want to book a high-speed train ticket", "k": 3}, format="json"
    )

    body = response.json()
    assert response.status_code == 200, body
    assert body["match"] == "none"
    assert body["results"] and all(result["sources"] == ["popular"] for result in body["results"])
    assert not any("matches" in result["reason"] or '"' in result["reason"] for result in body["results"])
    assert any("nothing in the catalog is a close match" in note for note in body["notes"])


@pytest.mark.parametrize(
    "text",
    [
        "a 保温杯 for green tea at the office",  # mixed script
        "🍵🫖 tea please ☕️",  # emoji
        "ᐃᓄᒃᑎᑐᑦ ᐅᖃᐅᓯᖅ ᑕᑯᒃᓴᐅᔪᖅ",  # Inuktitut syllabics: a script neither encoder was trained on
    ],
)
def test_free_text_in_any_script_is_an_answer_that_says_how_close_it_is(world, text):
    response = client_for(None).post("/api/v1/recommendations/text/", {"text": text, "k": 3}, format="json")

    body = response.json()
    assert response.status_code == 200, body
    assert body["match"] in ("close", "none")
    assert len(body["results"]) == 3


def test_a_free_text_longer_than_the_encoder_reads_is_answered_and_says_it_was_cut(world):
    text = "I want to brew loose-leaf tea. " * 300  # 9,300 characters: under the limit, far over 256 tokens

    response = client_for(None).post("/api/v1/recommendations/text/", {"text": text, "k": 2}, format="json")

    body = response.json()
    assert response.status_code == 200, body
    assert body["match"] in ("close", "none") and len(body["results"]) == 2
    assert any("longer than the encoder reads" in note for note in body["notes"])


def test_free_text_with_filters_and_a_signed_in_person(world):
    hiker = world["people"]["hiker1"]

    response = client_for(hiker).post(
        "/api/v1/recommendations/text/",
        {"text": "something for the mountains", "k": 3, "category": ["Kitchen"]},
        format="json",
    )

    assert set(_ids(response)) <= {"kettle", "teapot"}
    assert Recommendation.objects.get(id=response.json()["recommendation_id"]).user == hiker


@pytest.mark.parametrize("text", ["", "   ", "\u3000\n\t", None])
def test_free_text_needs_a_text(db, text):
    response = client_for(None).post("/api/v1/recommendations/text/", {"text": text}, format="json")

    assert response.status_code == 400
    assert "text" in error_of(response)["fields"]


def test_similar_items_come_from_behaviour_and_text(world):
    boots = world["items"]["boots"]

    response = client_for(None).get(f"/api/v1/items/{boots.id}/similar/?k=2")

    body = response.json()
    assert response.status_code == 200
    assert _ids(response)[0] == "tent"
    assert "behaviour" in body["results"][0]["sources"]


def test_similar_items_of_an_inactive_or_unknown_item_are_404(world):
    client = client_for(None)

    assert client.get(f"/api/v1/items/{world['items']['retired'].id}/similar/").status_code == 404
    assert client.get("/api/v1/items/987654/similar/").status_code == 404


# --- feedback ---------------------------------------------------------------------------------


@pytest.fixture
def shown(world):
    """A logged recommendation for hiker2 and the client of that person."""
    hiker = world["people"]["hiker2"]
    client = client_for(hiker)
    body = client.get("/api/v1/recommendations/?k=3").json()
    return {"client": client, "id": body["recommendation_id"], "items": [r["item"]["id"] for r in body["results"]]}


def test_impressions_clicks_and_dismissals_are_tied_to_the_log(shown):
    client, rid, items = shown["client"], shown["id"], shown["items"]

    impressions = client.post(
        "/api/v1/recommendations/feedback/",
        {"recommendation_id": rid, "kind": "impression", "item_ids": items},
        format="json",
    )
    click = client.post(
        "/api/v1/recommendations/feedback/",
        {"recommendation_id": rid, "kind": "click", "item_ids": items[:1]},
        format="json",
    )

    assert impressions.status_code == 201, impressions.content
    assert impressions.json() == {"recorded": len(items), "already_recorded": 0}
    assert click.status_code == 201
    assert Feedback.objects.filter(recommendation_id=rid).count() == len(items) + 1
    first = RecommendedItem.objects.get(recommendation_id=rid, item_id=items[0])
    assert first.impressed_at is not None and first.clicked_at is not None


def test_feedback_is_idempotent(shown):
    body = {"recommendation_id": shown["id"], "kind": "click", "item_ids": shown["items"][:1]}

    shown["client"].post("/api/v1/recommendations/feedback/", body, format="json")
    again = shown["client"].post("/api/v1/recommendations/feedback/", body, format="json")

    assert again.json() == {"recorded": 0, "already_recorded": 1}
    assert Feedback.objects.count() == 1


def test_a_dismissal_becomes_an_activity_and_the_item_stops_coming_back(shown, world):
    dismissed = shown["items"][0]
    hiker = world["people"]["hiker2"]

    shown["client"].post(
        "/api/v1/recommendations/feedback/",
        {"recommendation_id": shown["id"], "kind": "dismiss", "item_ids": [dismissed]},
        format="json",
    )

    assert Activity.objects.filter(user=hiker, kind="dismiss", item_id=dismissed).exists()
    again = shown["client"].get("/api/v1/recommendations/?k=5").json()
    assert dismissed not in [result["item"]["id"] for result in again["results"]]


def test_feedback_on_an_item_that_was_not_shown_is_400(shown, world):
    body = {"recommendation_id": shown["id"], "kind": "click", "item_ids": [world["items"]["boots"].id]}

    response = shown["client"].post("/api/v1/recommendations/feedback/", body, format="json")

    assert response.status_code == 400
    assert "item_ids" in error_of(response)["fields"]


def test_feedback_on_an_unknown_recommendation_is_404(person):
    body = {"recommendation_id": "6f1c9b8e-3a52-4d0e-9d6c-2f4a7e1b0c11", "kind": "click", "item_ids": [1]}

    response = client_for(person).post("/api/v1/recommendations/feedback/", body, format="json")

    assert response.status_code == 404


def test_anonymous_feedback_on_an_anonymous_answer(world):
    client = client_for(None)
    answer = client.post("/api/v1/recommendations/text/", {"text": "tea", "k": 1}, format="json").json()

    response = client.post(
        "/api/v1/recommendations/feedback/",
        {
            "recommendation_id": answer["recommendation_id"],
            "kind": "click",
            "item_ids": [answer["results"][0]["item"]["id"]],
        },
        format="json",
    )

    assert response.status_code == 201
    assert Feedback.objects.get().user is None


def test_feedback_on_an_item_hidden_since_it_was_shown_is_answered_as_not_shown(shown, world):
    hiker = world["people"]["hiker2"]
    hidden = shown["items"][0]
    Item.objects.filter(id=hidden).update(is_active=False)
    body = {"recommendation_id": shown["id"], "kind": "dismiss", "item_ids": [hidden]}

    response = shown["client"].post("/api/v1/recommendations/feedback/", body, format="json")

    assert response.status_code == 400
    assert error_of(response)["fields"] == {"item_ids": [f"item {hidden} was not shown in this recommendation"]}
    assert not Feedback.objects.exists()
    assert not Activity.objects.filter(user=hiker, kind="dismiss").exists()
