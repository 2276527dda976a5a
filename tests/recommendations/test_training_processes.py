"""The re-ranker's training data built in several forked processes (RANKER_PROCESSES) is the data
built in one.

A module of its own: the forked processes read through connections of their own, so the world
is committed here, never the module-wide transaction the shared themes_world lives in (an open
transaction in the parent would also keep its closed connection)."""

import numpy as np
import pytest

from recommendations.ranking.training import training_data_build
from tests.recommendations.conftest import themes_world_build

pytestmark = [pytest.mark.usefixtures("fresh_ranker_cache")]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_training_data_built_in_two_processes_is_the_data_built_in_one():
    themes_world_build()
    one = training_data_build(label_fraction=0.2, max_people=0, cold_share=0.25, processes=1)
    two = training_data_build(label_fraction=0.2, max_people=0, cold_share=0.25, processes=2)

    assert len(one.groups) > 8
    assert two.groups == one.groups and two.owners == one.owners and two.cold == one.cold
    assert two.cutoffs == one.cutoffs
    assert np.array_equal(two.labels, one.labels)
    assert np.array_equal(two.matrix, one.matrix, equal_nan=True)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_forked_evaluation_askers_score_with_a_lambdarank_ranker_after_this_process_trained_one():
    """LightGBM trained in this process, then its version served to people asked in forked
    processes (evaluate --processes 2): a child that parsed the model itself waited forever on
    OpenMP's lost thread pool; the parent parses it before the fork."""
    import faulthandler
    from datetime import timedelta

    from django.utils import timezone

    from recommendations.evaluation.protocols import _asked_in_processes, _person_variants
    from recommendations.evaluation.split import Split
    from recommendations.models import RankerAlgorithm
    from recommendations.ranking.active import ranker_activate, reset_active_ranker
    from recommendations.ranking.training import ranker_train
    from users.models import User

    themes_world_build()
    [lambdarank] = ranker_train(algorithms=(RankerAlgorithm.LAMBDARANK,), activate=False)
    ranker_activate(ranker=lambdarank)
    reset_active_ranker()  # as a fresh evaluation process: nothing parsed before asking
    for user in User.objects.all():
        user.external_id = f"ext-{user.pk}"
        user.save(update_fields=["external_id"])
    keys = sorted(User.objects.values_list("external_id", flat=True))
    moment = timezone.now() + timedelta(days=1)
    split = Split(
        train=[],
        test={key: set() for key in keys},
        n_interactions=0,
        fingerprint="",
        cutoffs=dict.fromkeys(keys, moment),
    )
    [full] = _person_variants([("full", ("behaviour", "semantic", "popular", "fresh"), "auto")], split, k=5)

    faulthandler.dump_traceback_later(240, exit=True)  # a hang fails the run instead of stalling it
    try:
        forked, latencies = _asked_in_processes(full, keys, processes=2)
    finally:
        faulthandler.cancel_dump_traceback_later()

    assert len(latencies) == len(keys) == 32
    assert forked == {key: full.ask(key) for key in keys}
    assert any(forked.values())
