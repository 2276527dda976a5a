from django.apps import AppConfig


class BundlesConfig(AppConfig):
    """The dataset bundle format: reading, importing and exporting items, users and events.

    It sits above catalog and users (it writes through their services) and below the
    recommender (the evaluation reads bundles); nothing in catalog or users imports it.
    """

    name = "bundles"
    verbose_name = "Dataset bundles"
