from django.apps import AppConfig
from django.conf import settings


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core.readiness import check_broker, check_database, readiness_check_register

        readiness_check_register("database", check_database)
        # Without the broker the web still serves and records writes (queueing is best effort and
        # the sweep heals what was not queued): degraded, not down.
        readiness_check_register("broker", check_broker, critical=False)
        if settings.DATABASE_REPLICAS:
            from core.replicas import replicas_readiness

            # The primary serves every read while the replicas do not answer: degraded, not down.
            readiness_check_register("replicas", replicas_readiness, critical=False)
