"""The served configuration against slow, stalled and chunked clients (issue #13 H3, L3).

The real command (`gunicorn -c config/gunicorn.conf.py`, what `make serve` runs) on a free port,
pointed at the test database; every request is raw HTTP/1.1 over a socket.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.factories import UserFactory
from tests.served import LIVE, body_of, read_until_closed, served

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STALLED = 8
READ_TIMEOUT = 2
BODY_LIMIT = 4096
# What the server is started with besides the served configuration's own defaults: the issue's
# two workers, a short read timeout so the test need not wait 10 s, a small body limit.
ENVIRONMENT = {
    "WEB_CONCURRENCY": "2",
    "GUNICORN_READ_TIMEOUT": str(READ_TIMEOUT),
    "DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE": str(BODY_LIMIT),
    "API_THROTTLE_AUTH": "1000/min",
}
STALLED_HEAD = (
    b"POST /api/v1/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n"
)


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    with served(tmp_path_factory.mktemp("served"), **ENVIRONMENT) as running:
        # Each worker's first request imports the URL configuration and the views (seconds here):
        # many at once, so that both workers have answered one before anything is measured.
        with ThreadPoolExecutor(max_workers=20) as pool:
            assert {status for status, _ in pool.map(lambda _: running.request(LIVE), range(20))} == {200}
        yield running


def _chunked(path: str, body: bytes, *, chunk_size: int = 1000) -> bytes:
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[start : start + chunk_size]), body[start : start + chunk_size])
        for start in range(0, len(body), chunk_size)
    )
    return (
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ).encode()
        + chunks
        + b"0\r\n\r\n"
    )


def test_stalled_bodies_neither_freeze_the_server_nor_stay_open(server):
    stalled = [server.connect() for _ in range(STALLED)]
    for client in stalled:
        client.sendall(STALLED_HEAD)  # and never the 100 bytes announced
    time.sleep(0.5)  # every stalled request has reached a worker thread and waits for its body
    started = time.monotonic()

    timings = []
    for _ in range(5):
        began = time.monotonic()
        status, _answer = server.request(LIVE)
        timings.append(time.monotonic() - began)
        assert status == 200

    assert max(timings) < 0.1, timings  # with 2 sync workers: 7 s (the issue), or a timeout
    answers = [read_until_closed(client) for client in stalled]  # the server ends each connection
    closed_after = time.monotonic() - started
    assert closed_after < READ_TIMEOUT + 3, closed_after
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert json.loads(body_of(answer))["error"]["code"] == "request_timeout"
    for client in stalled:
        client.close()


def test_a_chunked_body_is_read(server):
    user = UserFactory(username="chunky")
    body = json.dumps({"username": user.username, "password": "correct horse battery"}).encode()

    status, answer = server.request(_chunked("/api/v1/auth/token/", body, chunk_size=7))

    assert status == 200, answer  # before: 400 "username: This field is required." (read as empty)
    assert len(json.loads(body_of(answer))["token"]) == 40


def test_a_chunked_body_over_the_limit_is_413_in_the_error_shape(server):
    body = json.dumps({"username": "x" * BODY_LIMIT, "password": "y"}).encode()

    status, answer = server.request(_chunked("/api/v1/auth/token/", body))

    assert status == 413, answer
    error = json.loads(body_of(answer))["error"]
    assert error["code"] == "request_too_large"
    assert f"limit of {BODY_LIMIT} bytes" in error["message"]
