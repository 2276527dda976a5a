from django.core.management.base import BaseCommand, CommandError

from recommendations.vectors.text_model import TextModelError, text_model_train


class Command(BaseCommand):
    help = (
        "Train a new text model version from the catalog's own (question -> chosen item) and (text -> item) pairs "
        "(in this process); it becomes active only if it beats the frozen encoder on the later questions."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-activate", action="store_true", help="store the version, do not activate it")
        parser.add_argument("--seed", type=int, default=0, help="seed of the training's shuffles and samples")

    def handle(self, *args, no_activate, seed, **options):
        try:
            version = text_model_train(activate=not no_activate, seed=seed)
        except TextModelError as error:
            raise CommandError(str(error)) from error
        metrics = version.validation_metrics
        k = next(key for key in metrics if key.startswith("ndcg@"))
        pairs = ", ".join(f"{kind} {count}" for kind, count in version.training_pairs.items())
        self.stdout.write(
            f"text model v{version.version} {version.algorithm} over {version.base_model}: validation {k} "
            f"{metrics[k]} (frozen encoder {metrics['frozen_' + k]}) on {metrics['validation_questions']} later "
            f"questions; pairs: {pairs}; best epoch {metrics['best_epoch']}{' ACTIVE' if version.is_active else ''}"
        )
        self.stdout.write(f"  {version.notes}")
