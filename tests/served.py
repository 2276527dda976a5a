"""The real served configuration (`gunicorn -c config/gunicorn.conf.py`, as `make serve` runs it)
started as a child process on a free port, pointed at the test run's database, and raw HTTP/1.1
over sockets: what a slow, chunked or stalled client really sends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

START_SECONDS = 60
LIVE = b"GET /api/v1/health/live/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Served:
    port: int
    log: Path

    def connect(self, *, timeout: float = 30) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def request(self, raw: bytes, *, timeout: float = 30) -> tuple[int, bytes]:
        """Send one raw request on a new connection; the status code and the whole answer."""
        with self.connect(timeout=timeout) as client:
            client.sendall(raw)
            answer = read_until_closed(client)
        status_line = answer.split(b"\r\n", 1)[0]
        return int(status_line.split()[1]), answer


def read_until_closed(client: socket.socket) -> bytes:
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    return answer


def body_of(answer: bytes) -> bytes:
    """The body of a whole answer, its chunks joined when it came chunked."""
    head, body = answer.split(b"\r\n\r\n", 1)
    if b"transfer-encoding: chunked" not in head.lower():
        return body
    joined = b""
    while True:
        size_line, body = body.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return joined
        joined, body = joined + body[:size], body[size + 2 :]


@contextmanager
def served(tmp_path: Path, **environment: str) -> Iterator[Served]:
    """The served configuration on a free port until the block ends; its log in tmp_path."""
    port = free_port()
    log = tmp_path / f"gunicorn-{port}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        # The test run's database (the live server tests' rows are committed: transaction=True).
        "EMBEDDED_POSTGRES_DATABASE": connection.settings_dict["NAME"],
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_LOG_LEVEL": "WARNING",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        **environment,
    }
    command = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py"]
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        server = Served(port=port, log=log)
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                status, _ = server.request(LIVE, timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; its log:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
