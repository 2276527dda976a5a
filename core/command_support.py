"""What long management commands share: a progress bar over people, and the commit that runs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable

from django.conf import settings
from tqdm import tqdm


def people_progress(rows: Iterable, description: str) -> Iterable:
    """A progress bar on stderr (silent when stderr is not a terminal)."""
    return tqdm(list(rows), desc=description, unit=" people", file=sys.stderr, mininterval=1.0, disable=None)


def git_commit() -> str:
    """The short commit of the checkout, or "unknown" outside git."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=settings.BASE_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
