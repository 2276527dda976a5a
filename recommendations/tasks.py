"""Celery tasks: ids in, a service call, nothing else. Enqueued on commit by the services.

Interactive tasks (one new text, one edited item) run on the "interactive" queue so they never
wait behind bulk work on the "bulk" queue: catalog re-embedding (one batch) and the texts of an
API batch of activities.
"""

import logging

from celery import Task, shared_task
from django.apps import apps

from core.replicas import replica_mark_written
from recommendations.vectors import embedding

logger = logging.getLogger(__name__)

RETRY_POLICY = {
    "autoretry_for": embedding.DATABASE_OUTAGES,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 5,
}


class EmbeddingTask(Task):
    """Marks the row failed when the task fails for good (retries exhausted or a real error)."""

    row_model = ""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        row_ids = kwargs.get("row_ids") or ([kwargs["row_id"]] if kwargs.get("row_id") is not None else [])
        if isinstance(exc, embedding.DATABASE_OUTAGES):
            # Retries ran out during a long database outage: nothing is wrong with the rows. They
            # stay pending, and the sweep embeds them once the database is back; marked failed they
            # would wait for `embed --pending --include-failed` (as when the database came back
            # just in time for this update).
            logger.warning(
                "embedding gave up during a database outage ids=%s task=%s: left pending", row_ids[:10], task_id
            )
            return
        if self.row_model and row_ids:
            logger.error("embedding failed for good model=%s ids=%s task=%s", self.row_model, row_ids[:10], task_id)
            try:
                embedding.embedding_mark_failed(
                    model=apps.get_model(self.row_model), ids=row_ids, error=f"{type(exc).__name__}: {exc}"
                )
            except embedding.DATABASE_OUTAGES:
                logger.exception("could not mark ids=%s failed; the sweep will retry them", row_ids[:10])


@shared_task(base=EmbeddingTask, row_model="catalog.Item", **RETRY_POLICY)
def embed_item(*, row_id: int) -> int:
    return embedding.item_embeddings_refresh(item_ids=[row_id])


def _interest_and_list_refresh(user_id: int) -> int:
    """Their interest vectors, then their precomputed list (if one is kept) from those."""
    from recommendations.serving.precomputed import precomputed_list_refresh_if_kept

    written = embedding.user_interest_refresh(user_id=user_id)
    precomputed_list_refresh_if_kept(user_id=user_id)
    # Their next request reads the new vectors and list, not a replica that has not replayed them.
    replica_mark_written(user_id=user_id)
    return written


@shared_task(base=EmbeddingTask, row_model="users.Activity", **RETRY_POLICY)
def embed_activity(*, row_id: int) -> None:
    for user_id in embedding.activity_embeddings_refresh(activity_ids=[row_id]):
        _interest_and_list_refresh(user_id)


@shared_task(base=EmbeddingTask, row_model="users.Activity", **RETRY_POLICY)
def embed_activity_batch(*, row_ids: list[int]) -> None:
    """One API batch's texts (bulk queue): encoded together, then the person's interest once."""
    for user_id in embedding.activity_embeddings_refresh(activity_ids=row_ids):
        _interest_and_list_refresh(user_id)


@shared_task(**RETRY_POLICY)
def refresh_user_interest(*, user_id: int) -> int:
    """After an activity without text (or a deletion): interest vectors and precomputed list."""
    return _interest_and_list_refresh(user_id)


@shared_task(**RETRY_POLICY)
def embed_pending(*, include_failed: bool = False) -> dict:
    """The sweep's batch: waiting rows, stale interests, then the kept lists left behind."""
    from recommendations.serving.precomputed import precomputed_lists_refresh_behind

    done = embedding.embeddings_process_pending(include_failed=include_failed)
    if done.get("skipped_locked"):
        return done
    done["lists"] = precomputed_lists_refresh_behind()
    return done


@shared_task
def sweep_pending_embeddings() -> bool:
    """Periodic: queue the batch when rows wait (lost messages, broker restarts, imports)."""
    from recommendations.serving.precomputed import precomputed_lists_behind

    waiting = embedding.embeddings_waiting_count()
    waiting["lists"] = len(precomputed_lists_behind())
    if any(waiting.values()):
        logger.info(
            "sweep found rows waiting items=%d activities=%d users=%d text_model_items=%d community=%d"
            " community_weight=%d lists=%d",
            *waiting.values(),
        )
        embed_pending.delay()
        return True
    return False


@shared_task(**RETRY_POLICY)
def rebuild_behaviour_model() -> int | None:
    """Periodic: learn the item-to-item model and item statistics from all interactions."""
    from recommendations.retrieval.behaviour_build import behaviour_model_rebuild

    model = behaviour_model_rebuild()
    return model.version if model else None


# Training reads every person's past and builds a behaviour model of it: minutes, not seconds
# (about 4 minutes for MovieLens small's 610 people here), hence its own time limit.
@shared_task(**RETRY_POLICY, soft_time_limit=3600, time_limit=3660)
def train_ranker() -> list[int]:
    """Periodic: train new re-ranker versions; the best becomes active only if it earns it."""
    from recommendations.ranking.training import ranker_train

    return [version.version for version in ranker_train()]


@shared_task(**RETRY_POLICY)
def refresh_experiment_metrics(*, experiment_id: int) -> bool:
    """One experiment's online metrics from the logs (after a decision, a deletion, on demand)."""
    from recommendations.experiments.services import experiment_metrics_refresh

    return experiment_metrics_refresh(experiment_id=experiment_id) is not None


@shared_task(**RETRY_POLICY)
def refresh_experiments_metrics() -> int:
    """Periodic: the online metrics of running experiments and of those ended or changed since."""
    from recommendations.experiments.services import experiments_metrics_refresh_due

    return experiments_metrics_refresh_due()


@shared_task(**RETRY_POLICY)
def run_replay_check(*, ranker_id: int | None, requested_by_id: int | None = None) -> int:
    """A replay check of one version (None: the blend) on past logged answers; returns its id."""
    from recommendations.experiments.replay import replay_check_run
    from users.models import User

    requested_by = User.objects.filter(pk=requested_by_id).first() if requested_by_id else None
    return replay_check_run(ranker_id=ranker_id, requested_by=requested_by).pk


# Training reads every text pair and scores every item for each validation question each epoch:
# 121 s for MovieLens small at load 12-15 here (EVALUATION.md "P4 with the learned text model").
@shared_task(**RETRY_POLICY, soft_time_limit=3600, time_limit=3660)
def train_text_model() -> int | None:
    """Periodic: train a new text model version; it serves only if it beats the frozen encoder.
    Too little data (a new install) is logged and the frozen encoder keeps answering."""
    from recommendations.vectors.text_model import TextModelError, text_model_train

    try:
        return text_model_train().version
    except TextModelError as error:
        logger.info("no text model trained: %s", error)
        return None
