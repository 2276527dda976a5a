from django.core.management.base import BaseCommand, CommandError

from bundles.importing import bundle_import
from bundles.management.commands._import_report import progress_bar, queue_embedding, write_summary
from bundles.reading import BundleError, BundleSource, bundle_open


class Command(BaseCommand):
    help = "Import a dataset bundle folder (items, users, events). Safe to run again: it upserts."

    def add_arguments(self, parser):
        parser.add_argument("folder")
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument("--rejections-file", help="write every rejected row (file:line: reason) here")

    def open_source(self, folder: str) -> BundleSource:
        return bundle_open(folder)

    def handle(self, *args, folder, batch_size, rejections_file, **options):
        try:
            source = self.open_source(folder)
        except BundleError as error:
            raise CommandError(str(error)) from error
        summary = bundle_import(source=source, batch_size=batch_size, progress=progress_bar)
        write_summary(self, summary, rejections_file)
        queue_embedding(self)
