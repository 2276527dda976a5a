"""What a free-text answer costs on the demo catalog, and what its quoted reasons add (BENCHMARKS.md).

Run against a database holding the demo catalog with vectors of the serving model (`make demo`,
or `manage.py load_demo` then `manage.py embed`). Asks every bilingual question through
recommend_for_text as the ask page does (k=12, not logged), three ways: the encoder alone; the
answer with every snippet already cached (a warm process); and the answer with the snippet cache
emptied before each question (a fresh process, or items nobody was shown yet).
"""

import json
import time
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from catalog.models import ItemVector
from core.conf import recommender_settings
from recommendations.ml.encoder import get_encoder
from recommendations.serving.reasons import snippet_vectors_reset
from recommendations.serving.service import recommend_for_text

QUERIES = Path(__file__).resolve().parents[3] / "bundles" / "demo_bundle" / "bilingual_queries.jsonl"
ASK_SIZE = 12  # the ask page's answer


class Command(BaseCommand):
    help = "Time free-text answers on the demo catalog: encoder alone, reasons cached, reasons not cached."

    def add_arguments(self, parser):
        parser.add_argument("--k", type=int, default=ASK_SIZE)

    def handle(self, *args, k, **options):
        model = recommender_settings().serving_model
        if not ItemVector.objects.filter(model_name=model).exists():
            raise CommandError(f"no {model} item vectors: load the demo catalog and embed it first")
        questions = [json.loads(line)["query"] for line in QUERIES.read_text(encoding="utf-8").splitlines()]
        encoder = get_encoder(model)
        # Warm-up, untimed: the model, the language means, the database, and every snippet of
        # every item these questions are answered with (so "cached" below is a warm process).
        for question in questions:
            recommend_for_text(text=question, k=k, log=False)

        def timed(run) -> str:
            took = []
            for question in questions:
                started = time.perf_counter()
                run(question)
                took.append((time.perf_counter() - started) * 1000)
            return f"p50 {np.percentile(took, 50):.1f} ms, p99 {np.percentile(took, 99):.1f} ms"

        def cold(question: str) -> None:
            snippet_vectors_reset()
            recommend_for_text(text=question, k=k, log=False)

        self.stdout.write(f"{model}, {len(questions)} questions, k={k}")
        self.stdout.write(f"  encoder alone, one question: {timed(lambda q: encoder.encode([q], kind='query'))}")
        self.stdout.write(f"  answer, snippets cached: {timed(lambda q: recommend_for_text(text=q, k=k, log=False))}")
        self.stdout.write(f"  answer, snippets not cached: {timed(cold)}")
