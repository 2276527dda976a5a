"""Import a dataset bundle: items, then users, then events, in batches.

Each batch is one transaction, so a row is either fully written or not at all, and a bad row
is reported (file, line, reason) without stopping the rows around it. Importing the same
bundle twice changes nothing the second time: items are upserted by external_id, users by
user_id, events by their fingerprint.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from bundles.reading import BundleSource
from catalog.models import Item
from catalog.services import item_bulk_upsert
from core.conf import recommender_settings
from core.records import Rejection
from core.summaries import UpsertCounts
from users.services import activity_bulk_import, user_bulk_ensure

logger = logging.getLogger(__name__)


@dataclass
class FileSummary:
    file: str
    created: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0

    @property
    def rows(self) -> int:
        return self.created + self.updated + self.skipped + self.rejected

    def add(self, counts: UpsertCounts, rejections: list[Rejection]) -> None:
        self.created += counts.created
        self.updated += counts.updated
        self.skipped += counts.skipped
        self.rejected += len(rejections)


@dataclass
class ImportSummary:
    files: list[FileSummary] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    seconds: float = 0.0

    def file(self, name: str) -> FileSummary:
        return next(summary for summary in self.files if summary.file == name)


Progress = Callable[[Iterable, str], Iterable]


def _no_progress(rows: Iterable, description: str) -> Iterable:
    return rows


def _batches(rows: Iterable, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class _FirstOccurrence:
    """Splits a batch into good rows and rejections; a key repeated within one file is rejected."""

    def __init__(self, file: str, key: Callable | None = None) -> None:
        self.file = file
        self.key = key
        self.first_line: dict[str, int] = {}

    def __call__(self, batch: list) -> tuple[list, list[Rejection]]:
        good, rejections = [], []
        for row in batch:
            if isinstance(row, Rejection):
                rejections.append(row)
                continue
            if self.key is not None:
                first_line = self.first_line.setdefault(self.key(row), row.line)
                if first_line != row.line:
                    rejections.append(Rejection(self.file, row.line, f"duplicate of line {first_line}"))
                    continue
            good.append(row)
        return good, rejections


def bundle_import(
    *, source: BundleSource, batch_size: int | None = None, progress: Progress = _no_progress
) -> ImportSummary:
    batch_size = batch_size or recommender_settings().import_batch_size
    started = time.monotonic()
    summary = ImportSummary()

    def each_batch(file: str, rows: Iterable, key: Callable | None) -> Iterator[tuple[list, FileSummary]]:
        file_summary = FileSummary(file)
        summary.files.append(file_summary)
        split = _FirstOccurrence(file, key)
        for batch in _batches(progress(rows, file), batch_size):
            good, rejections = split(batch)
            summary.rejections.extend(rejections)
            file_summary.rejected += len(rejections)
            yield good, file_summary

    if source.items_file:
        for rows, file_summary in each_batch(source.items_file, source.items(), lambda row: row.external_id):
            file_summary.add(item_bulk_upsert(rows=rows), [])

    user_ids: dict[str, int] = {}
    if source.users_file:
        for rows, file_summary in each_batch(source.users_file, source.users(), lambda row: row.user_id):
            ids, counts = user_bulk_ensure(display_names={row.user_id: row.display_name for row in rows})
            user_ids.update(ids)
            file_summary.add(counts, [])

    if source.events_file:
        for rows, file_summary in each_batch(source.events_file, source.events(), None):
            missing_users = {row.user_id for row in rows} - user_ids.keys()
            if missing_users:
                ids, _counts = user_bulk_ensure(display_names=dict.fromkeys(sorted(missing_users), ""))
                user_ids.update(ids)
            referenced = {row.item_id for row in rows if row.item_id}
            item_ids = dict(Item.objects.filter(external_id__in=referenced).values_list("external_id", "id"))
            counts, rejections = activity_bulk_import(rows=rows, user_ids=user_ids, item_ids=item_ids)
            summary.rejections.extend(rejections)
            file_summary.add(counts, rejections)

    summary.seconds = time.monotonic() - started
    logger.info(
        "bundle imported files=%s rejected=%d ms=%d",
        ",".join(file_summary.file for file_summary in summary.files),
        len(summary.rejections),
        summary.seconds * 1000,
    )
    return summary
