from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from bundles.reading import BundleError, bundle_open
from core.command_support import people_progress
from recommendations.evaluation.protocols import (
    BILINGUAL_PAIRS,
    NO_MATCH_TARGET,
    WRONG_NO_MATCH_LIMIT,
    match_floor_calibrate,
)
from recommendations.evaluation.split import EvaluationError

DEMO_BUNDLE = Path(__file__).resolve().parents[3] / "bundles" / "demo_bundle"


class Command(BaseCommand):
    help = (
        "Choose a model's free-text match floor from the calibration questions of the bilingual set "
        "(built in an isolated database, asked through recommend_for_text) and print it with its rates; "
        "write the value into the model's card (recommendations/ml/model_cards.py)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", default=None, help="encoder model (default: the settings' serving model)")
        parser.add_argument("--bundle", default=str(DEMO_BUNDLE), help="bundle folder (default: the demo bundle)")
        parser.add_argument(
            "--queries", default=None, help="questions file (default: bilingual_queries.jsonl in the bundle)"
        )
        parser.add_argument(
            "--pairs",
            nargs="+",
            choices=BILINGUAL_PAIRS,
            default=list(BILINGUAL_PAIRS),
            help="language pairs to calibrate on (an English-only model: en-en)",
        )
        parser.add_argument("--database", default=None, help="isolated database (default: <live>_calibration)")

    def handle(self, *args, model, bundle, queries, pairs, database, **options):
        folder = Path(bundle)
        try:
            source = bundle_open(folder)
        except BundleError as error:
            raise CommandError(str(error)) from error
        database = database or f"{settings.DATABASES['default']['NAME']}_calibration"
        overrides = {"ENCODER_MODEL": model, "SERVING_MODEL": None} if model else {}
        try:
            with override_settings(RECOMMENDER={**settings.RECOMMENDER, **overrides}):
                result = match_floor_calibrate(
                    source=source,
                    database=database,
                    queries_file=queries or str(folder / "bilingual_queries.jsonl"),
                    pairs=tuple(pairs),
                    progress=people_progress,
                )
        except EvaluationError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"model {result.model}, pairs {' '.join(result.pairs)}: match floor {result.floor}\n"
            f"  calibration questions nothing answers told 'none': {result.none_told:.3f} of {result.n_none}"
            f" (target >= {NO_MATCH_TARGET})\n"
            f"  answerable calibration questions wrongly told 'none': {result.answerable_told:.3f}"
            f" of {result.n_answerable} (target <= {WRONG_NO_MATCH_LIMIT})"
        )
        if result.second_opinion is not None:
            self.stdout.write(
                f"  with the card's English second opinion ({result.second_opinion}, at its own floor) beside"
                f" it: told 'none' {result.second_none_told:.3f} of the questions nothing answers,"
                f" {result.second_answerable_told:.3f} of the answerable ones"
            )
        if result.meets_targets:
            self.stdout.write(self.style.SUCCESS("targets met on the calibration questions"))
        else:
            self.stdout.write(self.style.WARNING("targets NOT met on the calibration questions"))
        self.stdout.write(
            f"Write match_floor={result.floor} into the {result.model} card in recommendations/ml/model_cards.py."
        )
