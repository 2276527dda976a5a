"""The demo's simulated history (#16 item 5): seeded, labelled simulated, plausible; and `make demo`'s
steps train a ranker that earns activation on it by the unchanged rule."""

from pathlib import Path

import pytest
from django.core.management import call_command

from bundles.reading import bundle_open
from bundles.simulated_history import HISTORY_END, SIMULATED_PREFIX, simulated_history
from recommendations.models import RankerModel
from recommendations.ranking.active import reset_active_ranker
from recommendations.serving.service import recommend_for_user
from users.models import User

DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "demo_bundle"


def _history(people: int, seed: int = 0):
    return simulated_history(bundle_open(DEMO_BUNDLE).items(), people=people, seed=seed)


def test_the_simulated_history_is_seeded_and_labelled_simulated_everywhere():
    users, events = _history(50)

    assert (users, events) == _history(50)
    assert _history(50, seed=1)[1] != events
    assert len(users) == 50
    assert all(user.user_id.startswith(SIMULATED_PREFIX) for user in users)
    assert all("(simulated)" in user.display_name for user in users)
    assert {event.user_id for event in events} <= {user.user_id for user in users}


def test_simulated_people_choose_distinct_shop_and_video_items_in_time_order():
    _users, events = _history(100)
    per_person: dict[str, list] = {}
    for event in events:
        per_person.setdefault(event.user_id, []).append(event)

    assert all(event.kind in {"view", "click", "purchase"} for event in events)
    assert not any(event.item_id.startswith("help-") for event in events)
    for rows in per_person.values():
        assert len({row.item_id for row in rows}) == len(rows)
        assert [row.timestamp for row in rows] == sorted(row.timestamp for row in rows)
        assert rows[-1].timestamp < HISTORY_END
    # Short histories, a handful of items each, as in a shop.
    lengths = sorted(len(rows) for rows in per_person.values())
    assert lengths[0] >= 2 and lengths[len(lengths) // 2] <= 10


def test_no_simulated_people_means_no_events():
    assert _history(0) == ([], [])


@pytest.mark.slow
# Committed, as `make demo` commits each step: inside one test transaction each of the training's
# behaviour queries took about 3 s (seen in pg_stat_activity; the test ran for many minutes),
# committed the whole test takes about 40 s.
@pytest.mark.django_db(transaction=True)
def test_make_demo_steps_train_and_activate_a_ranker_on_the_simulated_history():
    """migrate, load_demo --simulated-people 300, rebuild_behaviour, train_ranker: what `make demo` runs."""
    reset_active_ranker()
    call_command("load_demo", "--simulated-people", "300")
    call_command("rebuild_behaviour")
    call_command("train_ranker", "--note", "SIMULATED demo history.")

    assert User.objects.filter(external_id__startswith=SIMULATED_PREFIX).count() == 300
    active = RankerModel.objects.get(is_active=True)
    metrics = active.validation_metrics
    # The activation rule, unchanged: the validation figure beats every single source.
    assert metrics["ndcg@20"] > max(metrics["single_sources"].values())
    assert active.notes.startswith("activated") and active.notes.endswith("SIMULATED demo history.")
    answer = recommend_for_user(user=User.objects.get(external_id="demo-user-01"), k=5, log=False)
    assert answer.fallback is False and answer.ranker == f"{active.algorithm} v{active.version}"
    reset_active_ranker()
