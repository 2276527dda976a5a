"""The production layout of deploy/ across network namespaces, with traffic through it (RELIABILITY.md)."""

import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.command_support import git_commit
from core.netns_layout import missing_requirements, netns_layout
from recommendations.layout_traffic import layout_traffic_run

# The small English encoder keeps the start quick (each host loads it); the layout's subject
# is the deployment, not the encoder's quality.
LAYOUT_ENCODER = "all-MiniLM-L6-v2"


class Command(BaseCommand):
    help = (
        "Start deploy/'s layout on this machine, one network namespace per host (lb with HAProxy, web1, web2, "
        "worker, beat, db-primary, db-replica, broker), send --people x --rounds of writes and reads through "
        "the load balancer, then check every acknowledged write is in the primary, embedded and replicated, "
        "the replica served reads, both web hosts answered and nothing failed; everything is torn down after. "
        "Needs root, ip, haproxy, redis-server (and rabbitmq-server for --broker rabbitmq). Exits 1 on a failure."
    )

    def add_arguments(self, parser):
        parser.add_argument("--people", type=int, default=8, help="clients writing and reading at once")
        parser.add_argument("--rounds", type=int, default=10, help="rounds of each person's traffic")
        parser.add_argument("--broker", choices=("rabbitmq", "redis"), default="rabbitmq")
        parser.add_argument("--prefix", default="rl-", help="names of the namespaces, bridge and links")
        parser.add_argument("--subnet", default="10.231.0.0/24", help="a /24 nothing else on the machine uses")
        parser.add_argument("--encoder", default=LAYOUT_ENCODER, help="RECOMMENDER_ENCODER_MODEL of every host")
        parser.add_argument("--folder", type=Path, default=None, help="where the run keeps its servers and logs")

    def handle(self, *args, people, rounds, broker, prefix, subnet, encoder, folder, **options):
        if people < 1 or rounds < 1:
            raise CommandError("--people and --rounds must be positive")
        missing = missing_requirements(broker=broker)
        if missing:
            raise CommandError(f"this machine lacks: {', '.join(missing)}")
        keep = folder is not None
        folder = folder or Path(tempfile.mkdtemp(prefix="netns-layout-"))
        now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        self.stdout.write(
            f"netns_layout: commit {git_commit()}, {platform.node()}, {os.cpu_count()} cores, {now}, "
            f"load average {load}, broker {broker}, encoder {encoder}, logs in {folder}"
        )
        started = time.monotonic()
        try:
            with netns_layout(
                folder, prefix=prefix, subnet=subnet, broker=broker, environment={"RECOMMENDER_ENCODER_MODEL": encoder}
            ) as layout:
                self.stdout.write(f"layout up in {time.monotonic() - started:.0f} s")
                report = layout_traffic_run(layout, people=people, rounds=rounds, log=self.stdout.write)
        except Exception as error:
            raise CommandError(f"the layout run stopped ({error}); torn down, logs kept in {folder}") from error
        for line in report.lines():
            self.stdout.write(line)
        self.stdout.write(f"whole run {time.monotonic() - started:.0f} s, torn down")
        if not report.passed:
            raise CommandError(f"the layout run failed (see above); logs kept in {folder}")
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
