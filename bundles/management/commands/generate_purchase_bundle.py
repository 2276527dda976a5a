from django.core.management.base import BaseCommand, CommandError

from bundles.purchase_bundle import purchase_bundle_write


class Command(BaseCommand):
    help = (
        "Write a seeded SIMULATED purchase bundle (people with a handful of purchases each) into a folder: "
        "for measuring training and evaluation on sparse data (bundles/purchase_bundle.py)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--people", type=int, default=10_000)
        parser.add_argument("--items", type=int, default=2_000)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--out", required=True, help="the bundle's folder (created if missing)")

    def handle(self, *args, people, items, seed, out, **options):
        try:
            counts = purchase_bundle_write(folder=out, people=people, items=items, seed=seed)
        except ValueError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            self.style.WARNING(
                f"SIMULATED purchase bundle in {out}: {counts['items']} items, {counts['users']} people, "
                f"{counts['events']} events (seed {seed}); nobody's real behaviour"
            )
        )
