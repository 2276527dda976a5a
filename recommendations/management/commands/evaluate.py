import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from bundles.movielens import movielens_open
from bundles.reading import BundleError, bundle_open
from core.command_support import git_commit, people_progress
from core.conf import recommender_settings
from recommendations.evaluation.protocols import PROTOCOLS, Options, protocol_run
from recommendations.evaluation.report import evaluation_run_save, report_charts, report_markdown
from recommendations.evaluation.split import EvaluationError
from recommendations.ml.model_cards import model_card


class Command(BaseCommand):
    help = (
        "Evaluate the served recommender offline on a bundle (or a MovieLens folder): split, build from the "
        "train part in an isolated database, ask the same service the API uses, score."
    )

    def add_arguments(self, parser):
        parser.add_argument("bundle")
        parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="p1")
        parser.add_argument("--k", type=int, default=20)
        parser.add_argument("--test-fraction", type=float, default=0.2)
        parser.add_argument("--test-last", type=int, default=None, help="hold out the last N interactions instead")
        parser.add_argument("--include-seen", action="store_true", help="rank items the person already had too")
        parser.add_argument(
            "--with-blend", action="store_true", help="P1: also the full system ordered by the fallback blend"
        )
        parser.add_argument(
            "--model",
            default=None,
            help="encoder model to evaluate (writes and serves the vectors; default: the settings' serving model)",
        )
        parser.add_argument(
            "--queries",
            default=None,
            help="bilingual: the questions file (default: bilingual_queries.jsonl in the bundle folder)",
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            help="P1, P2: processes that build the ranker's training data and ask each variant's people (forked)",
        )
        parser.add_argument("--database", default=None, help="name of the isolated database (default: <live>_eval)")
        parser.add_argument("--out", default=None, help="folder for report.json and report.md")

    def handle(self, *args, model, **options):
        if model is None:
            return self._evaluate(**options)
        # One model writes the vectors and answers (no model change in progress in an evaluation).
        with override_settings(RECOMMENDER={**settings.RECOMMENDER, "ENCODER_MODEL": model, "SERVING_MODEL": None}):
            return self._evaluate(**options)

    def _evaluate(
        self,
        *,
        bundle,
        protocol,
        k,
        test_fraction,
        test_last,
        include_seen,
        with_blend,
        queries,
        processes,
        database,
        out,
        **options,
    ):
        if processes < 1:
            raise CommandError("--processes must be 1 or more")
        folder = Path(bundle)
        try:
            source = movielens_open(folder) if (folder / "movies.csv").is_file() else bundle_open(folder)
        except BundleError as error:
            raise CommandError(str(error)) from error
        database = database or f"{settings.DATABASES['default']['NAME']}_eval"
        commit = git_commit()  # the code that runs, read before the run (minutes long)
        # P2 and P3 read only k from the options (their split is fixed by the protocol).
        run_options = Options(
            k=k,
            test_fraction=test_fraction,
            test_last=test_last,
            include_seen=include_seen,
            with_blend=with_blend,
            queries_file=queries or str(folder / "bilingual_queries.jsonl"),
            processes=processes,
        )
        try:
            report = protocol_run(
                PROTOCOLS[protocol], source=source, database=database, options=run_options, progress=people_progress
            )
        except EvaluationError as error:
            raise CommandError(str(error)) from error
        payload = {
            **asdict(report),
            "bundle": str(folder.resolve()),
            "git_commit": commit,
            "encoder": recommender_settings().encoder_model,
            "match_floor": model_card(recommender_settings().serving_model).match_floor,
            "settings": {
                key: value for key, value in recommender_settings().as_dict().items() if not key.endswith("_DIR")
            },
            "finished_at": datetime.now(UTC).isoformat(),
        }
        out_dir = (
            Path(out) if out else Path(settings.VAR_DIR) / "evaluations" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(payload, indent=2, default=str))
        markdown = report_markdown(payload, title=f"Evaluation {protocol.upper()} on {folder.name} (K={k})")
        (out_dir / "report.md").write_text(markdown)
        charts = report_charts(payload)
        for name, png in charts.items():
            (out_dir / f"{name}.png").write_bytes(png)
        run = evaluation_run_save(
            payload=json.loads(json.dumps(payload, default=str)), markdown=markdown, charts=charts
        )
        self.stdout.write(markdown)
        self.stdout.write(self.style.SUCCESS(f"written to {out_dir} (evaluation run {run.pk} for the staff pages)"))
