"""MovieLens folders (movies.csv, ratings.csv, tags.csv, links.csv) read as a dataset bundle.

movies -> items (first genre as category, all genres as tags, year and ids in attributes);
ratings -> rating events; tags -> tag events (the person's own words about a movie).
The rows go through the same validation and import as any bundle.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from bundles.reading import BundleError, BundleSource, parse_event
from catalog.item_fields import ItemRow, parse_item
from core.records import Rejection, RowError
from users.activity_rules import InvalidActivityError
from users.events import EventRow

NO_GENRES = "(no genres listed)"
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _csv(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for record in reader:
            yield reader.line_num, record


def _links(folder: Path) -> dict[str, dict]:
    path = folder / "links.csv"
    if not path.is_file():
        return {}
    return {
        record["movieId"]: {
            key: value for key, value in (("imdb_id", record.get("imdbId")), ("tmdb_id", record.get("tmdbId"))) if value
        }
        for _line, record in _csv(path)
    }


def _items(folder: Path) -> Iterator[ItemRow | Rejection]:
    links = _links(folder)
    for line, record in _csv(folder / "movies.csv"):
        genres = [genre for genre in (record.get("genres") or "").split("|") if genre and genre != NO_GENRES]
        title = (record.get("title") or "").strip()
        attributes: dict = {"genres": genres, **links.get(record.get("movieId", ""), {})}
        if match := _YEAR.search(title):
            attributes["year"] = int(match.group(1))
        bundle_record = {
            "external_id": record.get("movieId"),
            "title": title,
            "category": genres[0] if genres else "",
            "tags": genres,
            "attributes": attributes,
        }
        try:
            yield parse_item(line, bundle_record, False)
        except (RowError, ValueError) as error:
            yield Rejection("movies.csv", line, str(error))


def _events(folder: Path) -> Iterator[EventRow | Rejection]:
    for file, kind in (("ratings.csv", "rating"), ("tags.csv", "tag")):
        path = folder / file
        if not path.is_file():
            continue
        for line, record in _csv(path):
            bundle_record = {
                "user_id": record.get("userId"),
                "item_id": record.get("movieId"),
                "kind": kind,
                "rating": record.get("rating"),
                "text": record.get("tag"),
                "timestamp": record.get("timestamp"),
            }
            try:
                row = parse_event(line, bundle_record, False)
            except (RowError, ValueError, InvalidActivityError) as error:
                yield Rejection(file, line, str(error))
                continue
            row.file = file
            yield row


def movielens_open(folder: Path | str) -> BundleSource:
    folder = Path(folder)
    for required in ("movies.csv", "ratings.csv"):
        if not (folder / required).is_file():
            raise BundleError(f"{folder} is not a MovieLens folder: {required} is missing")
    return BundleSource(
        items_file="movies.csv",
        users_file=None,
        events_file="ratings.csv+tags.csv",
        items=lambda: _items(folder),
        users=lambda: iter(()),
        events=lambda: _events(folder),
    )
