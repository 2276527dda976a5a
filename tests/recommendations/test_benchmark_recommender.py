import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_benchmark_recommender_times_the_services_in_its_own_database_and_drops_it(tmp_path):
    live_database = connection.settings_dict["NAME"]
    bench_database = f"{live_database}_bench"
    out = tmp_path / "recommender-300.json"

    call_command(
        "benchmark_recommender",
        "--items",
        "300",
        "--people",
        "20",
        "--requests",
        "5",
        "--database",
        bench_database,
        "--out",
        str(out),
    )

    report = json.loads(out.read_text())
    assert connection.settings_dict["NAME"] == live_database
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [bench_database])
        assert cursor.fetchone() is None
    assert report["semantic_search"] == "exact scan"  # 300 vectors: under EXACT_SEARCH_MAX_VECTORS
    for name in (
        "recommend_for_user, computed live",
        "recommend_for_user, one category (~2% of items), computed live",
        "recommend_for_user, from the precomputed list",
        "recommend_for_user, one category, from the precomputed list",
        "recommend_for_text (encoder included)",
        "encoder alone, one text",
        "similar_items",
        "numpy scan, top 20 of one vector (floor)",
    ):
        figures = report["latency"][name]
        assert figures["n"] == 5 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    first_requests = report["latency"]["recommend_for_user, first request: list computed and kept"]
    assert first_requests["n"] == report["precomputed_list"]["lists"] <= 5
    for figures in report["recall_hnsw_against_exact"].values():
        assert figures["people"] == 5 and 0.0 <= figures["recall_at_10"] <= 1.0
    assert report["behaviour_model"]["algorithm"] == "ease"
    assert report["hnsw_index"]["megabytes"] > 0 and report["build_seconds"]["hnsw_index_build"] >= 0
    profile = report["queries_per_request"]["recommend_for_user, computed live"]
    assert profile["queries_per_request"] > 0 and profile["costliest"][0]["ms_per_request"] >= 0
    # The kept list with its signature, its items that pass the filters, pins, the page's items,
    # and the running experiment's arms (recommendations.serving.arms).
    assert report["queries_per_request"]["recommend_for_user, from the precomputed list"]["queries_per_request"] == 5


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_kept_benchmark_database_is_measured_again_without_building_it(tmp_path, settings):
    settings.VAR_DIR = tmp_path
    bench_database = f"{connection.settings_dict['NAME']}_bench_kept"
    common = ["--items", "300", "--people", "20", "--requests", "5", "--database", bench_database]
    try:
        call_command("benchmark_recommender", *common, "--keep-database", "--out", str(tmp_path / "first.json"))
        call_command("benchmark_recommender", *common, "--reuse-database", "--out", str(tmp_path / "again.json"))
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{bench_database}" WITH (FORCE)')

    first, again = (json.loads((tmp_path / name).read_text()) for name in ("first.json", "again.json"))
    assert "reused_database" not in first and again["reused_database"] is True
    assert again["build_seconds"] == first["build_seconds"]  # the build's own figures, carried over
    assert again["latency"]["recommend_for_user, computed live"]["n"] == 5
    assert again["recall_hnsw_against_exact"] == first["recall_hnsw_against_exact"]


@pytest.mark.django_db
def test_benchmark_recommender_refuses_a_catalog_smaller_than_its_categories():
    with pytest.raises(CommandError, match="--items >= 100"):
        call_command("benchmark_recommender", "--items", "10")
