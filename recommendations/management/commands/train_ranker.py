from django.core.management.base import BaseCommand, CommandError

from core.command_support import people_progress
from recommendations.models import RankerAlgorithm
from recommendations.ranking.active import RankerError
from recommendations.ranking.training import ranker_train


class Command(BaseCommand):
    help = (
        "Train new re-ranker versions from the logged interactions (in this process); the best becomes active "
        "only if it beats every single source and the active version on validation."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--max-people", type=int, default=None, help="people read (default RANKER_MAX_PEOPLE; 0: everyone)"
        )
        parser.add_argument(
            "--algorithm",
            action="append",
            choices=[RankerAlgorithm.LAMBDARANK, RankerAlgorithm.LOGISTIC_REGRESSION],
            help="train only these (repeatable; default both)",
        )
        parser.add_argument("--no-activate", action="store_true", help="store the versions, activate none")
        parser.add_argument(
            "--processes",
            type=int,
            default=None,
            help="processes that build the training data (default RANKER_PROCESSES; the cores to spare)",
        )
        parser.add_argument(
            "--note", default="", help="added to the new versions' notes (e.g. that the history is simulated)"
        )

    def handle(self, *args, max_people, algorithm, no_activate, note, processes, **options):
        if processes is not None and processes < 1:
            raise CommandError("--processes must be at least 1")
        if max_people is not None and max_people != 0 and max_people < 2:
            raise CommandError("--max-people must be 0 (everyone) or at least 2")
        try:
            versions = ranker_train(
                max_people=max_people,
                algorithms=tuple(algorithm or (RankerAlgorithm.LAMBDARANK, RankerAlgorithm.LOGISTIC_REGRESSION)),
                activate=not no_activate,
                data_note=note,
                processes=processes,
                progress=people_progress,
            )
        except RankerError as error:
            raise CommandError(str(error)) from error
        for version in versions:
            version.refresh_from_db()
            metrics = version.validation_metrics
            k = next(key for key in metrics if key.startswith("ndcg@"))
            sources = ", ".join(f"{name} {value}" for name, value in metrics["single_sources"].items())
            self.stdout.write(
                f"ranker v{version.version} {version.algorithm}: validation {k} {metrics[k]} "
                f"(single sources: {sources}; blend {metrics['blend']}){' ACTIVE' if version.is_active else ''}"
            )
            cold = metrics.get(f"cold_{k}")
            if cold is not None:
                self.stdout.write(
                    f"  warm groups {metrics.get(f'warm_{k}')}, cold groups {cold} "
                    f"(semantic alone {metrics['single_sources_cold']['semantic']})"
                )
            if version.notes:
                self.stdout.write(f"  {version.notes}")
        if versions:
            metrics = versions[0].validation_metrics
            self.stdout.write(
                f"learned from {metrics['refit_people']} of {metrics['labelled_people']} labelled people, "
                f"{metrics['cold_items']} items made cold; features {metrics['data_seconds']['features']} s "
                f"({metrics['data_seconds']['features_per_person_ms']} ms a person)"
            )
