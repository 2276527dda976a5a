from django.core.management.base import BaseCommand

from bundles.exporting import bundle_export


class Command(BaseCommand):
    help = "Write items, users and events to a dataset bundle folder."

    def add_arguments(self, parser):
        parser.add_argument("folder")

    def handle(self, *args, folder, **options):
        counts = bundle_export(folder=folder)
        self.stdout.write(
            self.style.SUCCESS(
                f"wrote {counts['items']} items, {counts['users']} users, {counts['events']} events to {folder}"
            )
        )
