from datetime import UTC, datetime, timedelta

import numpy as np

from recommendations.vectors.interest import Evidence, event_weight, interests_build

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _unit(*values: float) -> np.ndarray:
    vector = np.zeros(8, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def _evidence(vector, kind="view", rating=None, days_ago=0.0) -> Evidence:
    return Evidence(vector, kind, rating, NOW - timedelta(days=days_ago))


def test_kinds_weigh_purchase_over_high_rating_over_click_over_view():
    weights = [
        event_weight(kind=kind, rating=rating, age_days=0, half_life_days=30)
        for kind, rating in [("purchase", None), ("rating", 5.0), ("click", None), ("view", None)]
    ]

    assert weights == sorted(weights, reverse=True) and len(set(weights)) == 4


def test_low_ratings_and_dismissals_push_away():
    assert event_weight(kind="rating", rating=1.0, age_days=0, half_life_days=30) < 0
    assert event_weight(kind="dismiss", rating=None, age_days=0, half_life_days=30) < 0


def test_weight_halves_every_half_life():
    fresh = event_weight(kind="purchase", rating=None, age_days=0, half_life_days=30)

    assert event_weight(kind="purchase", rating=None, age_days=30, half_life_days=30) == fresh / 2


def test_interest_points_at_what_was_liked_and_away_from_what_was_disliked():
    liked, disliked = _unit(1, 0.2), _unit(0.2, 1)

    [interest] = interests_build(
        [_evidence(liked, "purchase"), _evidence(disliked, "rating", rating=1.0)],
        now=NOW,
        half_life_days=30,
        max_clusters=3,
    )

    assert float(interest.vector @ liked) > 0.9
    assert float(interest.vector @ disliked) < float(liked @ disliked)
    assert np.isclose(np.linalg.norm(interest.vector), 1.0)


def test_recent_evidence_outweighs_old():
    old, new = _unit(1, 0), _unit(0, 1)

    [interest] = interests_build(
        [_evidence(old, "purchase", days_ago=120), _evidence(new, "purchase", days_ago=1)],
        now=NOW,
        half_life_days=30,
        max_clusters=1,
    )

    assert float(interest.vector @ new) > float(interest.vector @ old)


def test_diverse_tastes_get_one_vector_per_theme_besides_the_overall_one():
    rng = np.random.default_rng(0)
    hiking, baking = _unit(1, 0, 0), _unit(0, 0, 1)
    evidence = [
        _evidence(_unit(*(theme[:3] + rng.normal(scale=0.05, size=3))), "purchase", days_ago=day)
        for day, theme in enumerate([hiking] * 12 + [baking] * 10)
    ]

    interests = interests_build(evidence, now=NOW, half_life_days=365, max_clusters=3)

    assert len(interests) == 3
    themes = interests[1:]
    assert {round(float(theme.vector @ hiking)) for theme in themes} == {0, 1}
    assert sum(theme.n_events for theme in themes) == 22
    assert all(0.2 <= theme.weight <= 0.8 for theme in themes)


def test_one_taste_gets_only_the_overall_vector():
    vector = _unit(1, 1)

    interests = interests_build([_evidence(vector, "view")] * 30, now=NOW, half_life_days=30, max_clusters=3)

    assert len(interests) == 1 and interests[0].n_events == 30


def test_evidence_that_cancels_out_gives_no_interest():
    vector = _unit(1)

    assert (
        interests_build(
            [_evidence(vector, "click"), _evidence(vector, "dismiss")], now=NOW, half_life_days=30, max_clusters=3
        )
        == []
    )


def test_a_history_from_years_ago_still_gives_an_interest():
    vector = _unit(1, 1)

    [interest] = interests_build(
        [_evidence(vector, "rating", rating=4.0, days_ago=3_650)], now=NOW, half_life_days=30, max_clusters=3
    )

    assert float(interest.vector @ vector) > 0.999
