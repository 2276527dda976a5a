import csv
from pathlib import Path

import pytest

from bundles.importing import bundle_import
from bundles.movielens import movielens_open
from catalog.models import Item
from users.models import Activity, User

MOVIELENS_SMALL = Path(__file__).resolve().parents[3] / "shared" / "data" / "movielens-small"


def _rows(path: Path) -> int:
    with open(path, encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def _write_tiny_movielens(folder: Path) -> Path:
    folder.mkdir()
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n2,Heat (1995),Action|Crime\n"
        "3,Untitled,(no genres listed)\n"
    )
    (folder / "links.csv").write_text("movieId,imdbId,tmdbId\n1,0114709,862\n")
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,7.5,964982704\n")
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,2,atmospheric,964982800\n")
    return folder


@pytest.mark.django_db
def test_movielens_movies_become_items_ratings_and_tags_become_events(tmp_path):
    summary = bundle_import(source=movielens_open(_write_tiny_movielens(tmp_path / "ml")))

    toy_story = Item.objects.get(external_id="1")
    assert toy_story.category == "Adventure" and toy_story.tags == ["Adventure", "Animation", "Children"]
    assert toy_story.attributes == {
        "genres": ["Adventure", "Animation", "Children"],
        "imdb_id": "0114709",
        "tmdb_id": "862",
        "year": 1995,
    }
    assert Item.objects.get(external_id="3").tags == []
    assert list(Activity.objects.order_by("created_at").values_list("kind", "rating", "text")) == [
        ("rating", 4.0, None),
        ("tag", None, "atmospheric"),
    ]
    assert [str(rejection) for rejection in summary.rejections] == ["ratings.csv:3: rating 7.5 is outside 0.5..5.0"]


@pytest.mark.slow
@pytest.mark.django_db
@pytest.mark.skipif(not MOVIELENS_SMALL.is_dir(), reason="../shared/data/movielens-small is not on this machine")
def test_movielens_small_imports_completely():
    summary = bundle_import(source=movielens_open(MOVIELENS_SMALL))

    n_movies = _rows(MOVIELENS_SMALL / "movies.csv")
    n_ratings = _rows(MOVIELENS_SMALL / "ratings.csv")
    n_tags = _rows(MOVIELENS_SMALL / "tags.csv")
    assert summary.rejections == []
    assert (n_movies, n_ratings, n_tags) == (9_742, 100_836, 3_683)
    assert Item.objects.count() == n_movies
    assert Activity.objects.filter(kind="rating").count() == n_ratings
    assert Activity.objects.filter(kind="tag").count() == n_tags
    assert User.objects.count() == 610
