"""The Celery app. Workers: `celery -A config worker -Q interactive,bulk`; the sweep: `celery -A config beat`."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("recommender")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def load_encoder_after_fork(**kwargs) -> None:
    # Loaded in each worker process after the fork, never in the parent: torch's thread pools
    # do not survive a fork, and a model per task would cost 1 s each.
    from recommendations.ml.encoder import get_encoder

    get_encoder()
