"""Per-person write quotas (issue #13 M3): activities per minute, bytes of text per day."""

import pytest

from tests.api.conftest import client_for, error_of
from tests.factories import UserFactory
from users.models import Activity

pytestmark = pytest.mark.django_db


@pytest.fixture
def quotas(settings):
    def set_quotas(*, activities_per_minute: int = 1000, text_bytes_per_day: int = 10**9) -> None:
        settings.RECOMMENDER = {
            **settings.RECOMMENDER,
            "ACTIVITIES_PER_MINUTE": activities_per_minute,
            "TEXT_BYTES_PER_DAY": text_bytes_per_day,
        }

    return set_quotas


def _search(text: str = "tent for windy campsites") -> dict:
    return {"kind": "search", "text": text}


def test_activities_per_minute_are_limited_with_the_limit_and_retry_after(quotas):
    quotas(activities_per_minute=3)
    person = UserFactory()
    client = client_for(person)

    statuses = [client.post("/api/v1/activities/create/", _search(), format="json").status_code for _ in range(3)]
    refused = client.post("/api/v1/activities/create/", _search(), format="json")

    assert statuses == [201, 201, 201]
    assert refused.status_code == 429
    error = error_of(refused)
    assert error["code"] == "quota_exceeded"
    assert "limit of 3 activities per minute" in error["message"]
    assert 0 < error["retry_after"] <= 61
    assert refused["Retry-After"] == str(error["retry_after"])
    assert Activity.objects.filter(user=person).count() == 3


def test_a_batch_counts_each_activity_and_is_refused_whole(quotas):
    quotas(activities_per_minute=5)
    person = UserFactory()
    client = client_for(person)
    client.post("/api/v1/activities/create/", _search(), format="json")

    refused = client.post("/api/v1/activities/batch/", {"activities": [_search()] * 5}, format="json")
    fits = client.post("/api/v1/activities/batch/", {"activities": [_search()] * 4}, format="json")

    assert refused.status_code == 429, refused.json()
    assert fits.status_code == 201  # the refused batch was not counted
    assert Activity.objects.filter(user=person).count() == 5


def test_text_bytes_per_day_are_limited_per_person(quotas):
    quotas(text_bytes_per_day=10_000)
    person, other = UserFactory(), UserFactory()
    long_review = "é" * 3_000  # 6,000 bytes of UTF-8

    first = client_for(person).post("/api/v1/activities/create/", _search(long_review), format="json")
    second = client_for(person).post("/api/v1/activities/create/", _search(long_review), format="json")
    someone_else = client_for(other).post("/api/v1/activities/create/", _search(long_review), format="json")

    assert (first.status_code, second.status_code, someone_else.status_code) == (201, 429, 201)
    assert "limit of 10000 bytes of text per day" in error_of(second)["message"]
    assert int(second["Retry-After"]) <= 86_401


def test_the_default_quotas_refuse_the_issues_megabyte_batch():
    person = UserFactory()
    batch = {"activities": [{"kind": "search", "text": "x" * 10_000}] * 100}

    refused = client_for(person).post("/api/v1/activities/batch/", batch, format="json")

    assert refused.status_code == 429  # 1,000,000 bytes of text against 200,000 per day
    assert not Activity.objects.filter(user=person).exists()
