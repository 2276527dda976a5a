"""The arithmetic of experiments, without a database: assignment, the test, the plan, the verdict.

Simulated people whose click probabilities per arm are known (recommendations.experiments.
simulation) go through the same figures_compute the logs go through.
"""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from recommendations.experiments import statistics
from recommendations.experiments.metrics import ArmInfo, Traffic, figures_compute
from recommendations.experiments.simulation import SimulatedArm, traffic_simulate
from recommendations.serving.arms import BUCKETS, Arm, arm_for_bucket, assignment_bucket

PEOPLE = 100_000
START = datetime(2026, 11, 1, tzinfo=UTC)
END = START + timedelta(days=14)
FIRST_DAY = (START.date() - datetime(1970, 1, 1).date()).days


def _arms(shares: list[int], *, experiment_id: int = 7) -> list[Arm]:
    return [
        Arm(experiment_id=experiment_id, arm_id=index + 1, share=share, ranker_id=None)
        for index, share in enumerate(shares)
    ]


def _assigned(arms: list[Arm], people: range) -> np.ndarray:
    experiment_id = arms[0].experiment_id
    return np.array(
        [
            arm_for_bucket(arms, assignment_bucket(experiment_id=experiment_id, person_id=person)).arm_id
            for person in people
        ]
    )


@pytest.mark.parametrize("shares", [[50, 50], [50, 30, 20], [34, 33, 33], [90, 10]])
def test_assignment_is_balanced_within_one_percent_of_the_shares_over_100000_people(shares):
    assigned = _assigned(_arms(shares), range(1, PEOPLE + 1))

    for arm_id, share in enumerate(shares, start=1):
        observed = float(np.mean(assigned == arm_id))
        assert abs(observed - share / 100) < 0.01, (arm_id, observed, share)


def test_assignment_is_stable_for_a_person_and_independent_between_experiments():
    arms = _arms([50, 50])
    people = range(1, 20_001)
    first = _assigned(arms, people)

    # The same person, asked again (another request, another process: nothing is stored), gets
    # the same arm; the key is a blake2b digest, not Python's salted hash().
    assert np.array_equal(first, _assigned(arms, people))
    assert assignment_bucket(experiment_id=7, person_id=12345) == assignment_bucket(experiment_id=7, person_id=12345)
    assert 0 <= assignment_bucket(experiment_id=7, person_id=1) < BUCKETS

    # Another experiment shuffles people anew: its arm tells nothing of the first one's.
    other = _assigned(_arms([50, 50], experiment_id=8), people)
    together = float(np.mean((first == 1) & (other == 1)))
    assert abs(together - 0.25) < 0.01


def test_one_impression_per_person_is_the_two_proportion_interval():
    generator = np.random.default_rng(0)
    clicks = generator.binomial(1, 0.1, size=5_000)

    estimate = statistics.ratio_estimate(clicks, np.ones_like(clicks), alpha=0.05)

    rate = clicks.mean()
    binomial = np.sqrt(rate * (1 - rate) / len(clicks))
    assert estimate.rate == pytest.approx(rate)
    assert estimate.standard_error == pytest.approx(binomial, rel=1e-3)  # ddof 1 against n
    assert estimate.low == pytest.approx(rate - 1.959964 * estimate.standard_error)


def test_impressions_needed_matches_the_normal_approximation_formula():
    # 10% -> 12% (a 20% relative change), two-sided alpha 0.05, power 0.8:
    # (1.959964 + 0.841621)^2 x (0.1 x 0.9 + 0.12 x 0.88) / 0.02^2 = 3838.1
    assert statistics.impressions_needed(baseline_rate=0.1, minimum_effect=0.2, alpha=0.05, power=0.8) == 3839
    assert statistics.impressions_needed(
        baseline_rate=0.1, minimum_effect=0.2, alpha=0.05, power=0.8, design_effect=2.0
    ) == pytest.approx(2 * 3838.1, abs=1)


def _figures(traffic: Traffic, *, names=("control", "treatment"), now=END, alpha=0.05, power=0.8, effect=0.2) -> dict:
    return figures_compute(
        arms=[ArmInfo(arm_id=index + 1, name=name, version="v", share=50) for index, name in enumerate(names)],
        traffic=traffic,
        items_shown={1: 10, 2: 12},
        catalog_size=100,
        alpha=alpha,
        power=power,
        minimum_effect=effect,
        start_at=START,
        end_at=END,
        now=now,
    )


def _planned_people(*, rate: float, effect: float, alpha: float, power: float, mean_impressions: float) -> int:
    """People per arm for the plan, with the design effect measured on a pilot of the control (as
    the metrics do once the control has traffic)."""
    pilot = traffic_simulate([SimulatedArm(1, 4_000, rate)], first_day=FIRST_DAY, days=14, seed=10_000)
    estimate = statistics.ratio_estimate(pilot.clicks, pilot.shown, alpha=alpha)
    needed = statistics.impressions_needed(
        baseline_rate=rate,
        minimum_effect=effect,
        alpha=alpha,
        power=power,
        design_effect=statistics.design_effect(estimate),
    )
    return int(np.ceil(needed / mean_impressions * 1.05))


def test_a_real_difference_is_found_with_the_planned_power_and_never_backwards():
    rate, effect, alpha, power = 0.10, 0.20, 0.05, 0.80
    people = _planned_people(rate=rate, effect=effect, alpha=alpha, power=power, mean_impressions=10.0)
    runs, found, backwards, covered = 300, 0, 0, 0
    true_difference = rate * effect
    for seed in range(runs):
        traffic = traffic_simulate(
            [SimulatedArm(1, people, rate), SimulatedArm(2, people, rate * (1 + effect))],
            first_day=FIRST_DAY,
            days=14,
            seed=seed,
        )
        # Read once, at the end of the planned run (the fixed horizon).
        figures = _figures(traffic, now=END + timedelta(days=1), alpha=alpha, power=power, effect=effect)
        verdict = figures["verdict"]
        found += verdict["state"] == "winner" and verdict["winner_arm_id"] == 2
        backwards += verdict["state"] == "control_better"
        ctr = figures["arms"][1]["comparison"]["ctr"]
        covered += ctr["low"] <= true_difference <= ctr["high"]

    # Power 0.8 as planned: at 300 runs, 3 standard errors below is 0.73.
    assert found / runs >= power - 3 * np.sqrt(power * (1 - power) / runs)
    # The worse arm is never declared better (alpha / 2 at most, in the wrong direction).
    assert backwards / runs <= alpha / 2 + 3 * np.sqrt(alpha / 2 / runs)
    # The stated 95% interval holds the true difference 95% of the time.
    assert covered / runs >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / runs)


def test_a_null_experiment_is_significant_no_more_often_than_alpha_over_repeated_seeds():
    alpha, runs = 0.05, 400
    significant, naive_significant = 0, 0
    for seed in range(runs):
        # People unlike each other (concentration 5) who see many items: impressions are not
        # independent, so only a per-person variance keeps the false-positive rate at alpha.
        traffic = traffic_simulate(
            [SimulatedArm(1, 400, 0.1), SimulatedArm(2, 400, 0.1)],
            first_day=FIRST_DAY,
            days=14,
            seed=seed,
            mean_impressions=20,
            concentration=5,
        )
        figures = _figures(traffic, now=END + timedelta(days=1), alpha=alpha)
        assert figures["plan"]["ended"]
        significant += figures["verdict"]["state"] != "no_difference"
        # The same data through the textbook test that counts impressions as independent.
        rates = [figures["arms"][index]["rates"]["ctr"] for index in (0, 1)]
        pooled = (rates[0]["numerator"] + rates[1]["numerator"]) / (rates[0]["denominator"] + rates[1]["denominator"])
        spread = np.sqrt(pooled * (1 - pooled) * (1 / rates[0]["denominator"] + 1 / rates[1]["denominator"]))
        naive_significant += abs(rates[1]["rate"] - rates[0]["rate"]) / spread > 1.959964

    assert significant / runs <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / runs)
    assert naive_significant / runs > 2 * alpha  # why the per-person variance is there


def test_before_the_planned_sample_the_page_shows_interim_figures_not_a_verdict():
    traffic = traffic_simulate(
        [SimulatedArm(1, 100, 0.05), SimulatedArm(2, 100, 0.10)], first_day=FIRST_DAY, days=3, seed=1
    )

    figures = _figures(traffic, now=START + timedelta(days=3))

    verdict = figures["verdict"]
    assert verdict["state"] == "collecting" and verdict["winner_arm_id"] is None
    assert verdict["text"].startswith("Interim figures, not a verdict")
    plan = figures["plan"]
    assert plan["impressions_still_needed"] == plan["impressions_needed_per_arm"] - plan["smallest_arm_impressions"] > 0
    # 3 days of ~1,000 impressions per arm: the days still needed follow from that pace.
    assert plan["days_still_needed"] == pytest.approx(
        plan["impressions_still_needed"] / (plan["smallest_arm_impressions"] / 3), rel=0.01
    )


def test_more_arms_compare_with_the_control_at_a_bonferroni_alpha():
    traffic = traffic_simulate(
        [SimulatedArm(1, 50, 0.05), SimulatedArm(2, 50, 0.05), SimulatedArm(3, 50, 0.05)],
        first_day=FIRST_DAY,
        days=14,
        seed=2,
    )

    figures = _figures(traffic, names=("a", "b", "c"))

    assert figures["alpha_per_comparison"] == pytest.approx(0.025)
    assert figures["arms"][2]["comparison"]["ctr"]["alpha"] == pytest.approx(0.025)
    assert len(figures["series"]["c"]["ctr"]) == len(figures["days"])
