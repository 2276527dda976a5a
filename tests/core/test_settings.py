import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int

ROOT = Path(__file__).resolve().parents[2]


def _import_settings(**environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-c", "import config.settings"], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = _import_settings(DJANGO_DEBUG="false")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_production_starts_with_a_secret_key():
    assert _import_settings(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 50).returncode == 0


def test_a_bad_boolean_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("DJANGO_DEBUG", "ture")

    with pytest.raises(ImproperlyConfigured, match="DJANGO_DEBUG"):
        env_bool("DJANGO_DEBUG", False)


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("Yes", True), ("off", False), ("", True)])
def test_booleans_accept_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("SOME_FLAG", raw)

    assert env_bool("SOME_FLAG", True) is expected


def test_integers_are_checked(monkeypatch):
    monkeypatch.setenv("SOME_SIZE", "12k")
    with pytest.raises(ImproperlyConfigured, match="SOME_SIZE must be an integer"):
        env_int("SOME_SIZE", 1)

    monkeypatch.setenv("SOME_SIZE", "0")
    with pytest.raises(ImproperlyConfigured, match=">= 1"):
        env_int("SOME_SIZE", 1, minimum=1)


def test_database_url_must_be_postgresql():
    result = _import_settings(DJANGO_DEBUG="true", DATABASE_URL="sqlite:///tmp/x.db")

    assert result.returncode != 0
    assert "DATABASE_URL must point to PostgreSQL" in result.stderr


def test_a_setting_with_fixed_choices_refuses_others():
    result = _import_settings(DJANGO_DEBUG="true", RECOMMENDER_ENCODER_RUNTIME="gpu")

    assert result.returncode != 0
    assert "RECOMMENDER_ENCODER_RUNTIME must be one of auto, fp32, bf16, onnx" in result.stderr


def _settings_value(expression: str, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "CELERY_", "DATABASE_"))}
    env.update({"DJANGO_DEBUG": "true", **environment})
    return subprocess.run(
        [sys.executable, "-c", f"import config.settings as s; print({expression})"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def test_a_broker_url_with_an_unknown_scheme_is_refused_naming_the_variable():
    result = _import_settings(DJANGO_DEBUG="true", CELERY_BROKER_URL="kafka://127.0.0.1:9092")

    assert result.returncode != 0
    assert (
        "CELERY_BROKER_URL must start with redis://, rediss://, amqp:// or amqps://, got kafka scheme" in result.stderr
    )


def test_a_rabbitmq_broker_gets_durable_quorum_queues_and_publisher_confirms():
    result = _settings_value(
        "[(q.name, q.durable, q.queue_arguments, q.exchange.type) for q in s.CELERY_TASK_QUEUES],"
        " s.CELERY_BROKER_TRANSPORT_OPTIONS",
        CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "[('interactive', True, {'x-queue-type': 'quorum'}, 'topic'), "
        "('bulk', True, {'x-queue-type': 'quorum'}, 'topic')] {'confirm_publish': True}"
    )


def test_replica_urls_become_mirrored_replica_aliases():
    result = _settings_value(
        "s.DATABASE_REPLICAS, s.DATABASES['replica_2']['HOST'], s.DATABASES['replica_2']['TEST']",
        DATABASE_REPLICA_URLS="postgres://reader@10.0.0.5:5432/shop, postgres://reader@10.0.0.6:5432/shop",
        DJANGO_CACHE_URL="redis://127.0.0.1:6379/3",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['replica_1', 'replica_2'] 10.0.0.6 {'MIRROR': 'default'}"


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"DATABASE_REPLICA_URLS": "mysql://reader@10.0.0.5/shop"}, "replica 1 must be a postgres:// URL"),
        (
            {"DATABASE_REPLICA_URLS": "postgres://reader@10.0.0.5/shop"},
            "DATABASE_REPLICA_URLS needs a cache every web process shares",
        ),
    ],
)
def test_bad_replica_settings_are_refused_naming_the_variable(environment, message):
    result = _settings_value("s.DATABASE_REPLICAS", **environment)

    assert result.returncode != 0
    assert message in result.stderr
