import pytest

from core import apis
from tests.api.conftest import client_for

pytestmark = pytest.mark.django_db


def test_liveness_answers_without_touching_anything(django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client_for(None).get("/api/v1/health/live/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_checks_database_broker_and_encoder():
    response = client_for(None).get("/api/v1/health/ready/")

    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "encoder"}
    assert body["checks"]["encoder"]["model"] == "all-MiniLM-L6-v2"


def test_readiness_is_degraded_not_down_naming_the_failed_check_when_the_broker_is_down(settings):
    # Writes are still answered and kept while the broker is down (tests/api/test_broker_outage.py):
    # the web process stays in the load balancer.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    response = client_for(None).get("/api/v1/health/ready/")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert "127.0.0.1:1" not in response.content.decode()


def test_health_checks_are_never_throttled(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": "1/min", "user": "1/min"}}
    client = client_for(None)

    statuses = {client.get("/api/v1/health/live/").status_code for _ in range(5)}

    assert statuses == {200}


def test_readiness_reports_an_encoder_that_cannot_load(monkeypatch):
    def broken():
        raise OSError("weights missing")

    monkeypatch.setitem(apis.READINESS_CHECKS, "encoder", broken)

    response = client_for(None).get("/api/v1/health/ready/")

    assert response.status_code == 503
    encoder = response.json()["checks"]["encoder"]
    assert (encoder["ok"], encoder["detail"]) == (False, "OSError")
