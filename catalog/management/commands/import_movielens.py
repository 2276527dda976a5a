from catalog.bundles import BundleSource
from catalog.management.commands.import_bundle import Command as ImportBundleCommand
from catalog.movielens import movielens_open


class Command(ImportBundleCommand):
    help = "Import a MovieLens folder (movies, ratings, tags, links) as items and events."

    def open_source(self, folder: str) -> BundleSource:
        return movielens_open(folder)
