from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate, pre_delete

from core.conf import recommender_settings


def _ensure_vector_indexes(sender, using: str = "default", **kwargs) -> None:
    """After migrate: the configured encoder's HNSW indexes exist before its first vector."""

    from core.vector_indexes import vector_indexes_ensure, vector_indexes_forget
    from recommendations.ml.encoder import model_dimensions

    vector_indexes_forget()

    model_name = recommender_settings().encoder_model
    dimensions = model_dimensions(model_name)
    if dimensions:
        vector_indexes_ensure(model_name=model_name, dimensions=dimensions)


def _person_deleted(sender, instance, **kwargs) -> None:
    """Before a person's rows go: the experiments with their answers say their figures change."""
    from recommendations.experiments.services import experiments_mark_changed_for_person

    experiments_mark_changed_for_person(user_id=instance.pk)


class RecommendationsConfig(AppConfig):
    name = "recommendations"
    verbose_name = "Recommendations"

    def ready(self) -> None:
        from core.readiness import readiness_check_register
        from recommendations.readiness import check_encoder

        post_migrate.connect(_ensure_vector_indexes, sender=self)
        pre_delete.connect(_person_deleted, sender=settings.AUTH_USER_MODEL, dispatch_uid="experiments_person_deleted")
        readiness_check_register("encoder", check_encoder)
