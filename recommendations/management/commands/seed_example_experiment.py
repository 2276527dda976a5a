from django.core.management.base import BaseCommand

from recommendations.experiments.services import experiment_seed_example


class Command(BaseCommand):
    help = (
        "Seed a finished example experiment with SIMULATED traffic (the blend against the active ranker, "
        "or an A/A test without one) so the staff pages show what an experiment looks like. Its figures come "
        "from simulated people; no log or activity row is written. Replaces a previous example."
    )

    def add_arguments(self, parser):
        parser.add_argument("--people-per-arm", type=int, default=6_000)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, people_per_arm: int, seed: int, **options):
        experiment = experiment_seed_example(people_per_arm=max(people_per_arm, 2), seed=seed)
        verdict = experiment.metrics["verdict"]
        self.stdout.write(
            self.style.SUCCESS(f"seeded experiment {experiment.pk} (simulated): {experiment.name}\n{verdict['text']}")
        )
