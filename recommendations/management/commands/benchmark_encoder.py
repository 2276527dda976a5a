"""Encoder throughput and latency per runtime, with cosine against torch fp32 (BENCHMARKS.md)."""

import json
import time
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand

from core.conf import recommender_settings
from recommendations.ml.encoder import Encoder, choose_runtime, cpu_has_bf16, onnxruntime_available

DEMO_ITEMS = Path(__file__).resolve().parents[3] / "bundles" / "demo_bundle" / "items.jsonl"


def _texts(words: int, count: int) -> list[str]:
    """Real sentences from the demo catalog, cut or joined to about `words` words each."""
    descriptions = (json.loads(line)["description"] for line in DEMO_ITEMS.read_text(encoding="utf-8").splitlines())
    # English only: "words" are what spaces separate, which Chinese text does not use.
    pool = " ".join(text for text in descriptions if text.isascii()).split()
    return [" ".join(pool[(start * 7) % (len(pool) - words) :][:words]) for start in range(count)]


def _throughput(encoder: Encoder, texts: list[str], batch_size: int) -> float:
    encoder.encode(texts[:batch_size], kind="passage", batch_size=batch_size)
    started = time.perf_counter()
    encoder.encode(texts, kind="passage", batch_size=batch_size)
    return len(texts) / (time.perf_counter() - started)


class Command(BaseCommand):
    help = "Measure the encoder: texts/s for short and long texts by batch size, single-text latency."

    def add_arguments(self, parser):
        parser.add_argument("--model", default=None)
        parser.add_argument("--runtimes", default="fp32,onnx,bf16,mixed")
        parser.add_argument("--short", type=int, default=1024, help="short texts (~12 words) per run")
        parser.add_argument("--long", type=int, default=256, help="long texts (~100 words) per run")
        parser.add_argument("--single", type=int, default=200, help="single-text calls for p50/p99")

    def handle(self, *args, model, runtimes, short, long, single, **options):
        model = model or recommender_settings().encoder_model
        short_texts, long_texts = _texts(12, short), _texts(100, long)
        check_texts = short_texts[:64] + long_texts[:32] + ["保温杯可以装热水多久？", "Loved it 😍🔥", "🙂"]
        self.stdout.write(f"model={model} bf16_cpu={cpu_has_bf16()} onnxruntime={onnxruntime_available()}")
        reference = None
        for asked in runtimes.split(","):
            runtime = choose_runtime(asked)
            if runtime != asked:
                self.stdout.write(f"{asked}: not available on this machine (would run as {runtime}); skipped")
                continue
            encoder = Encoder(model, runtime=runtime, cache_dir=Path(recommender_settings().encoder_cache_dir))
            vectors = encoder.encode(check_texts, kind="passage").vectors
            if reference is None:
                reference = vectors
            cosine = float((vectors * reference).sum(axis=1).min())
            rows = []
            for batch_size in (16, 32, 64, 128):
                rows.append(
                    f"batch {batch_size}: short {_throughput(encoder, short_texts, batch_size):.0f}/s, "
                    f"long {_throughput(encoder, long_texts, batch_size):.0f}/s"
                )
            latencies = []
            for text in short_texts[:single]:
                started = time.perf_counter()
                encoder.encode([text], kind="query")
                latencies.append((time.perf_counter() - started) * 1000)
            p50, p99 = np.percentile(latencies, [50, 99])
            self.stdout.write(
                f"{runtime}: min cosine vs fp32 {cosine:.5f}; one short text p50 {p50:.1f} ms p99 {p99:.1f} ms"
            )
            for row in rows:
                self.stdout.write(f"  {row}")
