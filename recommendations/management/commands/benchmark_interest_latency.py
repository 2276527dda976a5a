"""Activity -> updated interest vector latency through a real Celery worker (BENCHMARKS.md).

Starts a worker (prefork, one process, encoder loaded after fork) on the configured broker,
records activities as the API would, and times until the person's interest vector changed, and
until their precomputed list (kept since they asked for recommendations) was recomputed from it.
"""

import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from catalog.models import Item
from core.worker import worker_start
from recommendations.models import PrecomputedList, UserInterest
from recommendations.serving.service import recommend_for_user
from users.models import User
from users.services import activity_record

QUERIES = [
    "waterproof boots for a winter hike",
    "my parcel has not arrived, what can I do",
    "a documentary about rivers and wildlife",
    "how do I get a refund for a gift card purchase",
    "保温杯可以装热水多久？",
]


class Command(BaseCommand):
    help = "Time activity -> interest vector updates through a real worker (needs CELERY_BROKER_URL and Redis)."

    def add_arguments(self, parser):
        parser.add_argument("--events", type=int, default=100)

    def handle(self, *args, events, **options):
        if not settings.CELERY_BROKER_URL:
            raise CommandError("set CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
        items = list(Item.objects.filter(embedding_status="ok").order_by("id")[:50])
        if not items:
            raise CommandError("no embedded items: run `manage.py load_demo` first")
        person, _ = User.objects.get_or_create(username="benchmark-latency", defaults={"display_name": "Benchmark"})
        log = Path(settings.VAR_DIR) / "benchmark-worker.log"
        worker = worker_start(log=log, broker_url=settings.CELERY_BROKER_URL, level="warning")
        try:
            self._wait_until_serving(person, items[0])
            recommend_for_user(user=person, log=False)  # they asked once: their list is kept
            latencies, list_latencies = [], []
            for number in range(events):
                before = (
                    UserInterest.objects.filter(user=person, cluster=0).values_list("updated_at", flat=True).first()
                )
                list_before = PrecomputedList.objects.filter(user=person).values_list("computed_at", flat=True).first()
                started = time.perf_counter()
                if number % 2:
                    activity_record(user=person, kind="search", text=f"{QUERIES[number % len(QUERIES)]} #{number}")
                else:
                    activity_record(user=person, kind="click", item=items[number % len(items)])
                while (
                    UserInterest.objects.filter(user=person, cluster=0).values_list("updated_at", flat=True).first()
                    == before
                ):
                    if time.perf_counter() - started > 30:
                        raise CommandError(f"no update within 30 s; see {log}")
                    time.sleep(0.002)
                latencies.append((time.perf_counter() - started) * 1000)
                while (
                    PrecomputedList.objects.filter(user=person).values_list("computed_at", flat=True).first()
                    == list_before
                ):
                    if time.perf_counter() - started > 30:
                        raise CommandError(f"no list recomputed within 30 s; see {log}")
                    time.sleep(0.002)
                list_latencies.append((time.perf_counter() - started) * 1000)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        for label, values in (("interest vector", latencies), ("precomputed list", list_latencies)):
            p50, p95, p99 = np.percentile(values, [50, 95, 99])
            self.stdout.write(f"{events} activities -> {label}: p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms")

    def _wait_until_serving(self, person, item) -> None:
        """The first task after start also pays for connections; wait for it before timing."""
        activity_record(user=person, kind="view", item=item)
        deadline = time.monotonic() + 120
        while not UserInterest.objects.filter(user=person).exists():
            if time.monotonic() > deadline:
                raise CommandError("the worker did not answer within 120 s")
            time.sleep(0.05)
