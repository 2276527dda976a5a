"""Shared by the import commands: a progress bar while rows stream, a summary at the end."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from django.core.management.base import BaseCommand
from tqdm import tqdm

from bundles.importing import ImportSummary
from catalog.services import embeddings_pending_queue

# Rejections printed in full; the rest are counted (all of them go to --rejections-file).
SHOWN_REJECTIONS = 50


def progress_bar(rows: Iterable, description: str) -> Iterable:
    return tqdm(rows, desc=description, unit=" rows", file=sys.stderr, mininterval=0.5, disable=None)


def write_summary(command: BaseCommand, summary: ImportSummary, rejections_file: str | None) -> None:
    out = command.stdout
    out.write(f"{'file':<24}{'created':>10}{'updated':>10}{'skipped':>10}{'rejected':>10}")
    for file_summary in summary.files:
        out.write(
            f"{file_summary.file:<24}{file_summary.created:>10}{file_summary.updated:>10}"
            f"{file_summary.skipped:>10}{file_summary.rejected:>10}"
        )
    for rejection in summary.rejections[:SHOWN_REJECTIONS]:
        command.stderr.write(f"rejected {rejection}")
    hidden = len(summary.rejections) - SHOWN_REJECTIONS
    if hidden > 0:
        command.stderr.write(f"... and {hidden} more rejected rows")
    if rejections_file:
        with open(rejections_file, "w", encoding="utf-8") as handle:
            handle.writelines(f"{rejection}\n" for rejection in summary.rejections)
    out.write(command.style.SUCCESS(f"done in {summary.seconds:.1f} s"))


def queue_embedding(command: BaseCommand) -> None:
    """After an import: queue the batch that embeds what changed, or say how to run it here."""
    if embeddings_pending_queue():
        command.stdout.write("queued the embedding of new and changed rows (bulk queue)")
    else:
        command.stdout.write("no broker configured: run `manage.py embed --pending` to embed the new rows")
