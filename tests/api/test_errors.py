"""One error shape; bad input is a 4xx that says what is wrong, never a 500."""

import pytest

from tests.api.conftest import client_for, error_of
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(person):
    return client_for(person)


def test_validation_errors_name_the_field(client):
    response = client.get("/api/v1/recommendations/?k=0&price_min=abc")

    error = error_of(response)
    assert response.status_code == 400
    assert error["code"] == "validation_error"
    assert set(error["fields"]) == {"k", "price_min"}


def test_nested_validation_errors_name_the_position(client):
    item = ItemFactory()
    body = {"activities": [{"kind": "view", "item": item.id}, {"kind": "teleport"}]}

    response = client.post("/api/v1/activities/batch/", body, format="json")

    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["activities.1.kind"]


def test_unknown_paths_under_api_are_json_404(client):
    response = client.get("/api/v2/nothing-here/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize("path", ["/api/v1/items/987654/", "/api/v1/items/99999999999999999999999/"])
def test_unknown_ids_are_404(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_a_body_over_the_limit_is_413_and_states_the_limit(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000

    response = client.post(
        "/api/v1/recommendations/text/", '{"text": "' + "x" * 5_000 + '"}', content_type="application/json"
    )

    assert response.status_code == 413
    assert "2000 bytes" in error_of(response)["message"]


def test_a_text_over_the_limit_is_400_on_that_field_and_states_the_limit(client, settings):
    settings.RECOMMENDER = {**settings.RECOMMENDER, "MAX_TEXT_LENGTH": 50}

    response = client.post("/api/v1/recommendations/text/", {"text": "y" * 51}, format="json")

    assert response.status_code == 400
    assert error_of(response)["fields"]["text"] == ["text is 51 characters long; the limit is 50"]


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        '{"text": NaN}',
        '{"text": "tea", "k": 1e400}',
        '{"text": "\\ud800 broken"}',
        "[" * 5_000 + "]" * 5_000,
        '{"attributes": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}",
    ],
    ids=["malformed", "nan", "infinite", "lone-surrogate", "deep-list", "deep-object"],
)
def test_malformed_bodies_are_400(client, raw):
    response = client.post("/api/v1/recommendations/text/", raw, content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_nul_characters_are_refused_by_field(client):
    response = client.post("/api/v1/recommendations/text/", {"text": "tea\x00pot"}, format="json")

    assert response.status_code == 400
    assert "text" in error_of(response)["fields"]


def test_nul_in_a_query_string_is_400_not_a_database_error(client):
    response = client.get("/api/v1/items/?category=tea%00pot")

    assert response.status_code == 400
    assert "category" in error_of(response)["fields"]


def test_only_json_bodies_are_accepted(client):
    response = client.post(
        "/api/v1/recommendations/text/", "text=tea", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_wrong_method_is_405_in_the_same_shape(client):
    response = client.delete("/api/v1/items/")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_an_unexpected_error_is_a_logged_json_500(client, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("users.apis.user_data_export", broken)

    response = client.get("/api/v1/me/export/")

    assert response.status_code == 500
    assert error_of(response)["code"] == "server_error"
    assert "boom" not in response.content.decode()
    assert "unexpected error in MeExportApi" in caplog.text


def test_no_cors_headers_are_sent(client):
    response = client.get("/api/v1/items/", HTTP_ORIGIN="https://elsewhere.example")

    assert "Access-Control-Allow-Origin" not in response
