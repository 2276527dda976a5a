from bundles.management.commands.import_bundle import Command as ImportBundleCommand
from bundles.movielens import movielens_open
from bundles.reading import BundleSource


class Command(ImportBundleCommand):
    help = "Import a MovieLens folder (movies, ratings, tags, links) as items and events."

    def open_source(self, folder: str) -> BundleSource:
        return movielens_open(folder)
