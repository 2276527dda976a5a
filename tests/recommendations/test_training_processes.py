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
