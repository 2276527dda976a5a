"""Errors under /api/ are the API's JSON shape whatever answered them; pages keep HTML error pages.

Through Django's test client, and through a real gunicorn process with DEBUG off, where a foreign
Host header and unknown paths take Django's handler path rather than a DRF view.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def error_of(status: int, content_type: str, body: bytes) -> dict:
    assert content_type.startswith("application/json"), (status, content_type, body[:200])
    error = json.loads(body)["error"]
    assert set(error) >= {"code", "message"}
    return error


def test_a_foreign_host_is_a_json_400_under_the_api_and_the_html_page_elsewhere():
    client = Client()

    api = client.get("/api/v1/health/live/", HTTP_HOST="attacker.example")
    page = client.get("/catalog/", HTTP_HOST="attacker.example")

    assert api.status_code == 400
    assert "Host" in error_of(api.status_code, api["Content-Type"], api.content)["message"]
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")


def test_a_method_the_docs_pages_do_not_take_is_a_json_405_with_allow():
    for path in ("/api/docs/", "/api/redoc/", "/api/schema/"):
        response = Client().post(path)

        assert response.status_code == 405
        assert error_of(405, response["Content-Type"], response.content)["code"] == "method_not_allowed"
        assert "GET" in response["Allow"]


@pytest.mark.urls("tests.core.error_urls")
def test_a_500_outside_drf_is_json_under_the_api_and_html_elsewhere():
    client = Client(raise_request_exception=False)

    api = client.get("/api/v1/broken-plain-view/")
    page = client.get("/broken-page/")

    assert api.status_code == 500
    assert error_of(500, api["Content-Type"], api.content)["code"] == "server_error"
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")


@pytest.mark.urls("tests.core.error_urls")
def test_a_body_over_the_limit_read_outside_drf_is_a_json_413_under_the_api(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    client = Client(raise_request_exception=False)
    body = "field=" + "x" * 5_000

    api = client.post("/api/v1/plain-form/", body, content_type="application/x-www-form-urlencoded")
    page = client.post("/plain-form/", body, content_type="application/x-www-form-urlencoded")

    assert api.status_code == 413
    assert "2000 bytes" in error_of(413, api["Content-Type"], api.content)["message"]
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")  # Django's own page


def test_unknown_page_paths_keep_the_html_404():
    page = Client().get("/no-such-page/")

    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


# --- a real server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """gunicorn serving config.wsgi with DEBUG off (the test settings: production ones whose static
    files need no collectstatic manifest); its database is unreachable (port 9), so the answers
    below come from the handler paths alone, and a query is a real 5xx."""
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE="2048",
        DATABASE_URL="postgresql://nobody@127.0.0.1:9/nothing",
        DATABASE_CONN_MAX_AGE="0",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}", "config.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else "gunicorn exited"
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


def _call(url: str, *, method: str = "GET", host: str | None = None, body: bytes | None = None, **headers: str):
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    if host is not None:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


@pytest.mark.slow
def test_a_real_server_answers_api_errors_as_json_and_page_errors_as_html(server):
    foreign_api = _call(f"{server}/api/v1/health/live/", host="attacker.example")
    foreign_page = _call(f"{server}/catalog/", host="attacker.example")
    unknown_api = _call(f"{server}/api/v2/nothing-here/")
    unknown_page = _call(f"{server}/no-such-page/")
    wrong_method = _call(f"{server}/api/docs/", method="DELETE")
    too_large = _call(
        f"{server}/api/v1/recommendations/text/",
        method="POST",
        body=json.dumps({"text": "x" * 5_000}).encode(),
        **{"Content-Type": "application/json"},
    )
    database_down_api = _call(f"{server}/api/v1/items/")
    database_down_page = _call(f"{server}/catalog/")

    assert foreign_api[0] == 400 and error_of(*foreign_api)["code"] == "bad_request"
    assert foreign_page[0] == 400 and foreign_page[1].startswith("text/html")
    assert unknown_api[0] == 404 and error_of(*unknown_api)["code"] == "not_found"
    assert unknown_page[0] == 404 and unknown_page[1].startswith("text/html")
    assert wrong_method[0] == 405 and error_of(*wrong_method)["code"] == "method_not_allowed"
    assert too_large[0] == 413 and "2048 bytes" in error_of(*too_large)["message"]
    assert database_down_api[0] >= 500 and error_of(*database_down_api)
    assert database_down_page[0] >= 500 and database_down_page[1].startswith("text/html")
