"""Starting a real Celery worker as a child process (the worker tests and latency benchmark)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection


def worker_start(
    *, log: Path, broker_url: str, level: str = "info", queues: str = "interactive,bulk", hostname: str | None = None
) -> subprocess.Popen:
    """One prefork worker process (by default on both queues), pointed at this process's database
    and broker. Two workers on one machine need their own hostname (`name@%h`).

    The encoder loads in the child after the fork (config.celery), as in production.
    """
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
        "CELERY_BROKER_URL": broker_url,
        # config.settings_test reads the test run's broker from here.
        "TEST_CELERY_BROKER_URL": broker_url,
        # The database this process uses (a test run's own, for instance), not the configured name.
        "EMBEDDED_POSTGRES_DATABASE": connection.settings_dict["NAME"],
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-Q",
        queues,
        "--concurrency=1",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        level,
    ]
    if hostname:
        command += ["--hostname", hostname]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as output:
        return subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=environment, stdout=output, stderr=subprocess.STDOUT
        )
