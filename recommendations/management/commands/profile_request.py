"""Where a user-recommendations request spends its time in the web process (issue #15, item 4).

    DJANGO_DEBUG=true python manage.py profile_request --requests 300

Runs GET /api/v1/recommendations/ through Django's whole stack (middleware, token look-up,
throttles, the view, the serializer, the renderer) in this process, for people whose kept list
is ready, as a web worker thread would, without the HTTP server and the network. It prints the
wall time per request (one unprofiled pass), the share of each part (a second pass under
cProfile, which slows everything alike), and the SQL statements of one request with their
times. Needs a database with people and their activities (`make demo` makes one). Run it on a
quiet machine for figures; the load average is printed beside them.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import statistics
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from rest_framework.authtoken.models import Token

from recommendations.serving.service import recommend_for_user
from users.models import User

URL = "/api/v1/recommendations/?k=20"
# (file suffix, function): the parts of a request, measured as cumulative time inside them.
PARTS = [
    ("the whole view (DRF dispatch)", "rest_framework/views.py", "dispatch"),
    ("token look-up", "rest_framework/authentication.py", "authenticate_credentials"),
    ("throttles", "core/throttling.py", "allow_request"),
    ("recommender: answer from the kept list", "recommendations/serving/precomputed.py", "answer_from_list"),
    ("answer log (1 + k rows)", "recommendations/serving/answers.py", "answer_log"),
    ("serialisation", "recommendations/apis.py", "_answer_data"),
    ("JSON rendering", "rest_framework/renderers.py", "render"),
    ("middleware and request set-up (whole handler)", "django/core/handlers/base.py", "get_response"),
    ("database round trips (psycopg execute)", "psycopg/cursor.py", "execute"),
]


class Command(BaseCommand):
    help = "Profile GET /api/v1/recommendations/ inside the web process: wall time, parts, SQL."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--requests", type=int, default=300)
        parser.add_argument("--people", type=int, default=20)

    def handle(self, *args, requests: int, people: int, **options) -> None:
        if requests < 1 or people < 1:
            raise CommandError("--requests and --people must be at least 1")
        persons = list(User.objects.filter(activities__isnull=False).distinct().order_by("id")[:people])
        if not persons:
            raise CommandError("no person with activities in this database: run `make demo` (load_demo) first")
        tokens = [Token.objects.get_or_create(user=person)[0].key for person in persons]
        for person in persons:
            recommend_for_user(user=person, log=False)  # their kept list, as after their first request
        client = Client()
        with override_settings(ALLOWED_HOSTS=["testserver", *settings.ALLOWED_HOSTS]):
            self._ask(client, tokens, requests=20)  # warm: connections, caches, imports
            wall, cpu = self._ask(client, tokens, requests=requests)
            profile = cProfile.Profile()
            profile.enable()
            profiled, _cpu = self._ask(client, tokens, requests=requests)
            profile.disable()
            with CaptureQueriesContext(connection) as captured:
                self._ask(client, tokens, requests=1)
        load = os.getloadavg()
        self.stdout.write(
            f"{requests} requests, {len(persons)} people, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        self.stdout.write(
            f"wall per request: p50 {statistics.median(wall):.2f} ms, mean {statistics.fmean(wall):.2f} ms, "
            f"p99 {_percentile(wall, 0.99):.2f} ms (Django's whole stack, no HTTP server)"
        )
        # This process's own CPU, which other work on the machine barely changes (the wall time
        # it does): what a web process spends per request, PostgreSQL's share not included.
        self.stdout.write(f"web process CPU per request: mean {statistics.fmean(cpu):.2f} ms")
        total = sum(profiled)
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]  # the raw table pstats keeps
        self.stdout.write(f"\nunder cProfile: {total / requests:.2f} ms per request; cumulative time per part:")
        for label, suffix, function in PARTS:
            seconds = sum(
                entry[3]
                for (filename, _line, name), entry in stats.items()
                if name == function and filename.endswith(suffix)
            )
            share = 100 * seconds * 1000 / total if total else 0.0
            self.stdout.write(f"  {label:<48} {seconds * 1000 / requests:7.2f} ms  {share:5.1f}%")
        self.stdout.write(f"\nSQL of one request ({len(captured.captured_queries)} statements):")
        for query in captured.captured_queries:
            self.stdout.write(f"  {float(query['time']) * 1000:6.2f} ms  {' '.join(query['sql'].split())[:110]}")

    def _ask(self, client: Client, tokens: list[str], *, requests: int) -> tuple[list[float], list[float]]:
        """Each request's wall time and this process's CPU time, in ms."""
        wall, cpu = [], []
        for number in range(requests):
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(URL, HTTP_AUTHORIZATION=f"Token {tokens[number % len(tokens)]}")
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            if response.status_code != 200:
                raise CommandError(f"GET {URL} answered {response.status_code}: {response.content[:300]!r}")
        return wall, cpu


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
