"""Throttling: anonymous per address, signed-in per person, free text and sign-in tighter."""

import pytest

from tests.api.conftest import client_for, error_of
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    def set_rates(**rates):
        defaults = {
            "anon": "100/min",
            "user": "100/min",
            "text_anon": "100/min",
            "text_user": "100/min",
            "auth": "100/min",
        }
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {**defaults, **rates}}

    return set_rates


def test_anonymous_callers_are_throttled_per_address_with_retry_after(rates):
    rates(anon="3/min")
    client = client_for(None)

    statuses = [client.get("/api/v1/items/").status_code for _ in range(4)]
    throttled = client.get("/api/v1/items/")

    assert statuses == [200, 200, 200, 429]
    error = error_of(throttled)
    assert error["code"] == "throttled"
    assert 0 < error["retry_after"] <= 60
    assert throttled["Retry-After"] == str(error["retry_after"])


def test_each_person_has_their_own_budget(rates, person):
    rates(user="2/min")
    first, second = client_for(person), client_for(UserFactory())

    assert [first.get("/api/v1/me/").status_code for _ in range(3)] == [200, 200, 429]
    assert second.get("/api/v1/me/").status_code == 200


def test_free_text_has_a_tighter_budget_for_anonymous_callers(rates, db):
    rates(text_anon="2/min")
    client = client_for(None)

    statuses = [
        client.post("/api/v1/recommendations/text/", {"text": "tea", "k": 1}, format="json").status_code
        for _ in range(3)
    ]

    assert statuses == [200, 200, 429]
    assert client.get("/api/v1/items/").status_code == 200  # other endpoints keep their own budget


def test_free_text_is_throttled_per_person(rates, person):
    rates(text_user="1/min")
    client = client_for(person)

    statuses = [
        client.post("/api/v1/recommendations/text/", {"text": "tea", "k": 1}, format="json").status_code
        for _ in range(2)
    ]

    assert statuses == [200, 429]


def test_password_guessing_through_the_token_endpoint_is_throttled(rates, person):
    rates(auth="2/min")
    client = client_for(None)
    wrong = {"username": person.username, "password": "guess"}

    statuses = [client.post("/api/v1/auth/token/", wrong, format="json").status_code for _ in range(3)]

    assert statuses == [400, 400, 429]


def test_a_client_cannot_pick_its_throttle_bucket_with_x_forwarded_for(rates):
    rates(anon="2/min")
    client = client_for(None)

    statuses = [
        client.get("/api/v1/items/", HTTP_X_FORWARDED_FOR=f"198.51.100.{number}").status_code for number in range(3)
    ]

    assert statuses == [200, 200, 429]


def test_behind_a_configured_proxy_the_address_it_appends_is_the_client(rates, settings):
    rates(anon="1/min")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = client_for(None)

    # The proxy appends the address it saw; what the client wrote before it is not trusted.
    first = client.get("/api/v1/items/", HTTP_X_FORWARDED_FOR="10.0.0.9, 198.51.100.1")
    again = client.get("/api/v1/items/", HTTP_X_FORWARDED_FOR="10.0.0.8, 198.51.100.1")
    other = client.get("/api/v1/items/", HTTP_X_FORWARDED_FOR="10.0.0.9, 198.51.100.2")

    assert (first.status_code, again.status_code, other.status_code) == (200, 429, 200)


def test_a_throttle_cache_that_cannot_be_reached_lets_requests_through(settings, django_capture_on_commit_callbacks):
    # A Redis cache (DJANGO_CACHE_URL) on a port where no server listens: the broker's Redis down.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"redis://127.0.0.1:{port}/0"}
    }
    client = client_for(UserFactory())

    with django_capture_on_commit_callbacks(execute=False):
        written = client.post("/api/v1/activities/create/", {"kind": "search", "text": "a warm tent"}, format="json")
    read = client_for(None).get("/api/v1/items/")

    assert written.status_code == 201, written.content
    assert read.status_code == 200, read.content
