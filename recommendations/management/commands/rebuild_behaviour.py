from django.core.management.base import BaseCommand

from recommendations.retrieval.behaviour_build import behaviour_model_rebuild


class Command(BaseCommand):
    help = "Learn the item-to-item behaviour model and item statistics from all interactions (in this process)."

    def add_arguments(self, parser):
        parser.add_argument("--algorithm", choices=["auto", "ease", "item_knn"], default=None)

    def handle(self, *args, algorithm, **options):
        model = behaviour_model_rebuild(algorithm=algorithm)
        if model is None:
            self.stdout.write("no interactions yet: nothing to learn")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"behaviour model v{model.version}: {model.algorithm}, {model.n_items} items, {model.n_users} users, "
                f"{model.n_interactions} interactions, {model.n_neighbours} neighbours, {model.build_seconds:.1f} s"
            )
        )
