"""Requests per second of the API as served, with the load generator on the same machine (#15 item 4).

    DJANGO_DEBUG=true python manage.py benchmark_api [--worker-class sync|gthread] [--workers 2]

Starts gunicorn with the project's configuration (config/gunicorn.conf.py, the worker class and
counts given here) on this database, makes every chosen person's kept list (as their first
visit does), then drives `wrk` against GET /api/v1/recommendations/?k=20 (cycling through the
people's API tokens), POST /api/v1/recommendations/text/ (anonymous, cycling through questions)
and /api/v1/health/live/ (the server's own floor), and prints requests/s, p50 and p99 per
endpoint and number of connections. Every answer is a full one, logged as the API always logs.
The throttles are lifted for the run only (the served process's environment). Needs people with
activities (`make demo`) and Debian's `wrk`. BENCHMARKS.md "API throughput" has the figures.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token

from core.command_support import git_commit
from recommendations.serving.service import recommend_for_user
from users.models import User

QUESTIONS = [
    "a warm jacket for winter hiking",
    "my parcel has not arrived",
    "我最近在找一件外套",
    "a funny film for the weekend",
    "how do I get a refund",
    "a waterproof tent for two people",
    "a yoga mat that does not slip",
    "忘记密码怎么办",
    "a good book about history",
    "running shoes for a beginner",
]
LUA_TOKENS = """
local tokens = {}
for line in io.lines("%(tokens)s") do tokens[#tokens + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/v1/recommendations/?k=20",
                    {["Authorization"] = "Token " .. tokens[(n %% #tokens) + 1]})
end
"""
LUA_TEXTS = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/api/v1/recommendations/text/", {["Content-Type"] = "application/json"},
                    bodies[(n %% #bodies) + 1])
end
"""
UNLIMITED = "1000000/min"
THROTTLES = ["API_THROTTLE_ANON", "API_THROTTLE_USER", "API_THROTTLE_TEXT_ANON", "API_THROTTLE_TEXT_USER"]


class Command(BaseCommand):
    help = "Requests/s, p50 and p99 of the API under gunicorn, driven by wrk on this machine."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--people", type=int, default=50)
        parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
        parser.add_argument("--seconds", type=int, default=20, help="per run")
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument("--worker-class", choices=["sync", "gthread"], default="sync")
        parser.add_argument("--threads", type=int, default=1, help="per worker (gthread)")
        parser.add_argument("--port", type=int, default=8055)
        parser.add_argument("--skip-text", action="store_true", help="user recommendations and liveness only")

    def handle(self, *args, people: int, connections: list[int], seconds: int, workers: int, **options) -> None:
        if people < 1 or seconds < 1 or workers < 1 or min(connections) < 1 or options["threads"] < 1:
            raise CommandError("--people, --seconds, --workers, --threads and --connections must be at least 1")
        wrk = shutil.which("wrk")
        if wrk is None:
            raise CommandError("wrk is not installed: apt-get install wrk")
        persons = list(User.objects.filter(activities__isnull=False).distinct().order_by("id")[:people])
        if not persons:
            raise CommandError("no person with activities in this database: run `make demo` (load_demo) first")
        for person in persons:
            recommend_for_user(user=person, log=False)  # their kept list, as after their first request
        folder = Path(tempfile.mkdtemp(prefix="benchmark-api-"))
        tokens = folder / "tokens.txt"
        tokens.write_text("".join(f"{Token.objects.get_or_create(user=person)[0].key}\n" for person in persons))
        bodies = folder / "bodies.txt"
        bodies.write_text("".join(f'{{"text": "{question}", "k": 20}}\n' for question in QUESTIONS))
        scripts = {
            "user recommendations": _script(folder / "tokens.lua", LUA_TOKENS % {"tokens": tokens}),
            "free text": _script(folder / "texts.lua", LUA_TEXTS % {"bodies": bodies}),
        }
        if options["skip_text"]:
            del scripts["free text"]
        base = f"http://127.0.0.1:{options['port']}"
        server = self._serve(folder, workers=workers, **options)
        try:
            _wait_ready(f"{base}/api/v1/health/ready/", server)
            for script in scripts.values():  # warm-up: connections, the encoder's first runs
                _wrk(wrk, base, connections=max(connections), seconds=5, script=script)
            before = os.getloadavg()
            rows = []
            for endpoint, script in scripts.items():
                for count in connections:
                    rows.append((endpoint, count, _wrk(wrk, base, connections=count, seconds=seconds, script=script)))
            live = _wrk(wrk, base + "/api/v1/health/live/", connections=max(connections), seconds=min(seconds, 10))
            rows.append(("`/api/v1/health/live/`", max(connections), live))
            after = os.getloadavg()
        finally:
            server.terminate()
            server.wait(timeout=60)
        self.stdout.write(
            f"commit {git_commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, gunicorn "
            f"{options['worker_class']} x {workers} (threads {options['threads']}), {len(persons)} people, "
            f"{seconds} s a run, load average {before[0]:.2f} before, {after[0]:.2f} after; logs in {folder}\n"
        )
        self.stdout.write("| endpoint | connections | requests/s | p50 | p99 | errors |\n|---|---|---|---|---|---|")
        for endpoint, count, result in rows:
            self.stdout.write(
                f"| {endpoint} | {count} | {result['rate']} | {result['p50']} | {result['p99']} | {result['errors']} |"
            )

    def _serve(
        self, folder: Path, *, workers: int, worker_class: str, threads: int, port: int, **_
    ) -> subprocess.Popen:
        environment = {
            **os.environ,
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or "benchmark-only",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_LOG_LEVEL": "WARNING",
            **{name: UNLIMITED for name in THROTTLES},
        }
        command = [
            str(Path(sys.executable).with_name("gunicorn")),
            "-c",
            "config/gunicorn.conf.py",
            "--workers",
            str(workers),
            "--worker-class",
            worker_class,
            "--threads",
            str(threads),
            "--bind",
            f"127.0.0.1:{port}",
        ]
        log = (folder / "gunicorn.log").open("wb")
        return subprocess.Popen(command, cwd=settings.BASE_DIR, env=environment, stdout=log, stderr=log)


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _wait_ready(url: str, server: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CommandError(f"gunicorn exited ({server.returncode}) before it was ready: see its log")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise CommandError(f"{url} was not ready within {timeout:.0f} s")


def _wrk(wrk: str, url: str, *, connections: int, seconds: int, script: Path | None = None) -> dict[str, str]:
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.findall(r"(Non-2xx or 3xx responses: \d+|Socket errors: [^\n]+)", output)
    return {
        "rate": _found(r"Requests/sec:\s+([\d.]+)", output),
        "p50": _found(r"\s50%\s+(\S+)", output),
        "p99": _found(r"\s99%\s+(\S+)", output),
        "errors": "; ".join(errors) or "none",
    }


def _found(pattern: str, output: str) -> str:
    match = re.search(pattern, output)
    if match is None:
        raise CommandError(f"unexpected wrk output: {output[:500]}")
    return match.group(1)
