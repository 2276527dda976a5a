"""Throttle counters shared by every web process when a broker is configured (issue #13 L2).

With 2 workers and a per-process cache, 20 of 25 token requests passed a limit of 10/min.
"""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.api.conftest import client_for
from tests.api.test_broker_outage import Broker
from tests.served import free_port, served

ROOT = django_settings.BASE_DIR


def _cache_settings(**environment: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "CELERY_"))}
    env.update(DJANGO_SECRET_KEY="x" * 50, **environment)
    script = "import json, config.settings as s; print(json.dumps(s.CACHES['default']))"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def test_with_a_redis_broker_the_cache_is_the_brokers_redis_in_a_database_of_its_own():
    cache = _cache_settings(CELERY_BROKER_URL="redis://:secret@10.1.2.3:6380/4")

    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert cache["LOCATION"] == "redis://:secret@10.1.2.3:6380/5"  # never the queues' database


def test_the_cache_url_wins_and_without_a_broker_each_process_counts_alone():
    chosen = _cache_settings(CELERY_BROKER_URL="redis://127.0.0.1:6379/0", DJANGO_CACHE_URL="redis://cache:6379/7")
    alone = _cache_settings()

    assert chosen["LOCATION"] == "redis://cache:6379/7"
    assert alone["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


@pytest.mark.django_db
def test_while_the_shared_cache_is_down_throttles_count_in_the_process(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "anon": "2/min"},
    }
    client = client_for(None)

    statuses = [client.get("/api/v1/items/").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]  # was a 500 for every request


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_web_processes_share_one_counter(tmp_path):
    broker = Broker()
    broker.start()
    # Production settings (config.settings) with a broker and no DJANGO_CACHE_URL, on the test database.
    environment = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_SECRET_KEY": "test-only-secret-key",
        "EMBEDDED_POSTGRES_DIR": connection.settings_dict["EMBEDDED_DATA_DIR"],
        "CELERY_BROKER_URL": broker.url,
        "WEB_CONCURRENCY": "1",
        "API_THROTTLE_AUTH": "3/min",
    }
    guess = json.dumps({"username": "nobody", "password": "guess"}).encode()
    request = (
        b"POST /api/v1/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(guess), guess)
    )
    try:
        with served(tmp_path, **environment) as first, served(tmp_path, **environment) as second:
            statuses = [server.request(request)[0] for _ in range(3) for server in (first, second)]
    finally:
        broker.stop()

    # Alternating between the two processes: the fourth guess is the first over the limit.
    assert statuses == [400, 400, 400, 429, 429, 429]  # each process alone: six 400s
