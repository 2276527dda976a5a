"""Soak: a whole served system of its own under mixed traffic with faults, then the reckoning (RELIABILITY.md)."""

import platform
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.command_support import git_commit
from core.fault_stack import FaultStack, http
from recommendations.soak import soak_run


class Command(BaseCommand):
    help = (
        "Start a private PostgreSQL, Redis, gunicorn (2 workers), a Celery worker and beat, load the demo "
        "catalog, send mixed traffic for --minutes with a fault every --fault-every seconds (broker, database, "
        "worker, network, beat), then reconcile: requests by status, acknowledged writes, rows found, "
        "duplicates, lost, p99 of reads outside fault windows. Exits 1 unless nothing was lost or duplicated "
        "and no answer was a 500."
    )

    def add_arguments(self, parser):
        parser.add_argument("--minutes", type=float, default=10.0)
        parser.add_argument("--clients", type=int, default=4, help="people sending traffic at once")
        parser.add_argument("--writes-per-second", type=float, default=2.0, help="all clients together")
        parser.add_argument("--fault-every", type=float, default=45.0, help="seconds between faults")
        parser.add_argument("--fault-seconds", type=float, default=8.0, help="how long each fault lasts")
        parser.add_argument("--folder", type=Path, default=None, help="where the run keeps its servers and logs")

    def handle(self, *args, minutes, clients, writes_per_second, fault_every, fault_seconds, folder, **options):
        if minutes <= 0 or clients < 1 or writes_per_second <= 0 or fault_every <= 0 or fault_seconds <= 0:
            raise CommandError(
                "--minutes, --clients, --writes-per-second, --fault-every and --fault-seconds must be positive"
            )
        folder = folder or Path(tempfile.mkdtemp(prefix="soak-"))
        now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        self.stdout.write(f"soak: commit {git_commit()}, {platform.node()}, {now}, logs in {folder}")
        stack = FaultStack(folder)
        try:
            stack.start_servers()
            self.stdout.write("loading the demo catalog into the run's own database")
            stack.manage("load_demo", timeout=1800)
            stack.manage("rebuild_behaviour", timeout=1800)
            stack.start_web()
            stack.start_worker()
            stack.start_beat()
            for _ in range(stack.web_workers * 2):  # each web process loads its encoder on its first probe
                http("GET", f"{stack.base_url}/api/v1/health/ready/", timeout=120)
            report = soak_run(
                stack,
                minutes=minutes,
                clients=clients,
                writes_per_second=writes_per_second,
                fault_every=fault_every,
                fault_seconds=fault_seconds,
                log=self.stdout.write,
            )
        finally:
            stack.stop()
        for line in report.lines():
            self.stdout.write(line)
        if not report.passed:
            raise CommandError("the soak found lost or duplicated writes, 500s or unsettled rows (see above)")
