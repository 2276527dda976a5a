"""Who may call what: every endpoint against anonymous / the person / another person / staff.

"Another person" acts on the person's own things (their activity, their recommendation, their
recommendations list); staff act as themselves unless the endpoint lets staff reach others.
"""

import pytest

from recommendations.models import Recommendation, RecommendedItem
from tests.api.conftest import client_for
from tests.factories import ItemFactory
from users.models import Activity

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "person", "other", "staff")


@pytest.fixture
def scene(person, other_person, staff):
    items = [ItemFactory() for _ in range(3)]
    inactive = ItemFactory(is_active=False)
    activity = Activity.objects.create(user=person, item=items[0], kind="view", created_at="2026-10-01T00:00:00Z")
    recommendation = Recommendation.objects.create(user=person, context="user")
    RecommendedItem.objects.create(recommendation=recommendation, item=items[1], position=0, score=1.0)
    return {
        "item": items[0],
        "inactive": inactive,
        "activity": activity,
        "recommendation": recommendation,
        "clients": {
            "anonymous": client_for(None),
            "person": client_for(person),
            "other": client_for(other_person),
            "staff": client_for(staff),
        },
        "person": person,
    }


def _item_body(n: int = 0) -> dict:
    return {"external_id": f"new-{n}", "title": "A new lamp", "category": "Home"}


# name: (method, url(scene), body(scene), {role: status})
MATRIX = {
    "recommendations for a person": (
        "get",
        lambda s: f"/api/v1/recommendations/?user={s['person'].id}&k=2",
        None,
        {"anonymous": 401, "person": 200, "other": 403, "staff": 200},
    ),
    "recommendations for oneself": (
        "get",
        lambda s: "/api/v1/recommendations/?k=2",
        None,
        {"anonymous": 401, "person": 200, "other": 200, "staff": 200},
    ),
    "free text": (
        "post",
        lambda s: "/api/v1/recommendations/text/",
        lambda s: {"text": "a lamp for reading", "k": 2},
        {"anonymous": 200, "person": 200, "other": 200, "staff": 200},
    ),
    "similar items": (
        "get",
        lambda s: f"/api/v1/items/{s['item'].id}/similar/?k=2",
        None,
        {"anonymous": 200, "person": 200, "other": 200, "staff": 200},
    ),
    "feedback on the person's recommendation": (
        "post",
        lambda s: "/api/v1/recommendations/feedback/",
        lambda s: {
            "recommendation_id": str(s["recommendation"].id),
            "kind": "click",
            "item_ids": [s["recommendation"].items.get().item_id],
        },
        {"anonymous": 404, "person": 201, "other": 404, "staff": 404},
    ),
    "list activities": (
        "get",
        lambda s: "/api/v1/activities/",
        None,
        {"anonymous": 401, "person": 200, "other": 200, "staff": 200},
    ),
    "record an activity": (
        "post",
        lambda s: "/api/v1/activities/create/",
        lambda s: {"kind": "view", "item": s["item"].id},
        {"anonymous": 401, "person": 201, "other": 201, "staff": 201},
    ),
    "record a batch": (
        "post",
        lambda s: "/api/v1/activities/batch/",
        lambda s: {"activities": [{"kind": "click", "item": s["item"].id}]},
        {"anonymous": 401, "person": 201, "other": 201, "staff": 201},
    ),
    "delete the person's activity": (
        "delete",
        lambda s: f"/api/v1/activities/{s['activity'].id}/delete/",
        None,
        {"anonymous": 401, "person": 204, "other": 404, "staff": 404},
    ),
    "list items": (
        "get",
        lambda s: "/api/v1/items/",
        None,
        {"anonymous": 200, "person": 200, "other": 200, "staff": 200},
    ),
    "list items with inactive ones": (
        "get",
        lambda s: "/api/v1/items/?include_inactive=true",
        None,
        {"anonymous": 403, "person": 403, "other": 403, "staff": 200},
    ),
    "read an inactive item": (
        "get",
        lambda s: f"/api/v1/items/{s['inactive'].id}/",
        None,
        {"anonymous": 404, "person": 404, "other": 404, "staff": 200},
    ),
    "create an item": (
        "post",
        lambda s: "/api/v1/items/create/",
        lambda s: _item_body(),
        {"anonymous": 401, "person": 403, "other": 403, "staff": 201},
    ),
    "update an item": (
        "patch",
        lambda s: f"/api/v1/items/{s['item'].id}/update/",
        lambda s: {"title": "Renamed"},
        {"anonymous": 401, "person": 403, "other": 403, "staff": 200},
    ),
    "deactivate an item": (
        "post",
        lambda s: f"/api/v1/items/{s['item'].id}/deactivate/",
        None,
        {"anonymous": 401, "person": 403, "other": 403, "staff": 200},
    ),
    "bulk upsert": (
        "post",
        lambda s: "/api/v1/items/bulk-upsert/",
        lambda s: {"items": [_item_body(1), _item_body(2)]},
        {"anonymous": 401, "person": 403, "other": 403, "staff": 200},
    ),
    "my profile": ("get", lambda s: "/api/v1/me/", None, {"anonymous": 401, "person": 200, "other": 200, "staff": 200}),
    "my export": (
        "get",
        lambda s: "/api/v1/me/export/",
        None,
        {"anonymous": 401, "person": 200, "other": 200, "staff": 200},
    ),
    "delete my account": (
        "delete",
        lambda s: "/api/v1/me/delete/",
        lambda s: {"password": "correct horse battery"},  # the factories' password
        {"anonymous": 401, "person": 204, "other": 204, "staff": 204},
    ),
    "revoke my token": (
        "delete",
        lambda s: "/api/v1/auth/token/delete/",
        None,
        {"anonymous": 401, "person": 204, "other": 204, "staff": 204},
    ),
    "liveness": (
        "get",
        lambda s: "/api/v1/health/live/",
        None,
        {"anonymous": 200, "person": 200, "other": 200, "staff": 200},
    ),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(MATRIX))
def test_permission_matrix(scene, endpoint, role):
    method, url, body, expected = MATRIX[endpoint]
    client = scene["clients"][role]

    response = getattr(client, method)(url(scene), body(scene) if body else None, format="json")

    assert response.status_code == expected[role], response.content
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}


def test_the_persons_activity_survives_another_persons_delete_attempt(scene):
    scene["clients"]["other"].delete(f"/api/v1/activities/{scene['activity'].id}/delete/")

    assert Activity.objects.filter(id=scene["activity"].id).exists()


def test_anonymous_callers_are_told_how_to_authenticate(scene):
    response = scene["clients"]["anonymous"].get("/api/v1/activities/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_wrong_token_is_401_not_anonymous_access(db):
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = client.get("/api/v1/items/")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_session_authentication_needs_the_csrf_token_for_writes(person, scene):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(person)

    assert client.get("/api/v1/activities/").status_code == 200
    refused = client.post("/api/v1/activities/create/", {"kind": "view", "item": scene["item"].id}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]
