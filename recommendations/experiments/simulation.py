"""Simulated traffic: people whose click probabilities per arm are known, for the tests of the
statistics and for the example experiment the demo seeds (always labelled simulated).

The simulation produces the same (arm, person, day) columns as the logs give
(metrics.Traffic), so figures_compute is the same code for both. People differ: each has
their own click propensity around the arm's rate (a beta distribution), and sees a varying
number of items, which is what makes per-person variance (the delta method) necessary. No row
is written: simulated people never reach the behaviour model or the ranker's training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recommendations.experiments.metrics import Traffic


@dataclass(frozen=True)
class SimulatedArm:
    arm_id: int
    people: int
    click_rate: float  # the mean click probability of an impression in this arm
    cart_given_click: float = 0.25
    purchase_given_cart: float = 0.4
    dismissal_rate: float = 0.02


def traffic_simulate(
    arms: Sequence[SimulatedArm],
    *,
    first_day: int,
    days: int,
    seed: int,
    mean_impressions: float = 10.0,
    concentration: float = 20.0,
    first_person_id: int = 1,
) -> Traffic:
    """People of each arm arrive on a random day and see 1 + Poisson(mean - 1) items; each has a
    click propensity drawn from Beta(concentration x rate, concentration x (1 - rate)) (so the
    arm's mean is `click_rate`; a smaller concentration, people more unlike each other)."""
    generator = np.random.default_rng(seed)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in Traffic.__dataclass_fields__}
    person = first_person_id
    for arm in arms:
        n = arm.people
        shown = 1 + generator.poisson(mean_impressions - 1, size=n)
        propensity = generator.beta(concentration * arm.click_rate, concentration * (1 - arm.click_rate), size=n)
        clicks = generator.binomial(shown, propensity)
        carts = generator.binomial(clicks, arm.cart_given_click)
        purchases = generator.binomial(carts, arm.purchase_given_cart)
        dismissals = generator.binomial(shown - clicks, arm.dismissal_rate)
        columns["arm_id"].append(np.full(n, arm.arm_id))
        columns["person_id"].append(np.arange(person, person + n))
        columns["day"].append(first_day + generator.integers(0, days, size=n))
        columns["shown"].append(shown)
        columns["seen"].append(shown)
        columns["clicks"].append(clicks)
        columns["carts"].append(carts)
        columns["purchases"].append(purchases)
        columns["dismissals"].append(dismissals)
        person += n
    return Traffic(**{name: np.concatenate(parts).astype(np.int64) for name, parts in columns.items()})


@dataclass(frozen=True)
class Calibration:
    runs: int
    people_per_arm: int
    detected: float  # share of runs whose verdict names the better arm (power, or alpha when equal)
    backwards: float  # share naming the worse arm (the control) better
    interval_coverage: float  # share whose interval of the difference holds the true difference


def calibration_run(
    *,
    control_rate: float,
    lift: float,
    people_per_arm: int,
    runs: int,
    alpha: float = 0.05,
    power: float = 0.8,
    minimum_effect: float = 0.2,
    mean_impressions: float = 10.0,
    concentration: float = 20.0,
) -> Calibration:
    """How often the verdict finds the better arm over `runs` simulated experiments (seeds 0..runs-1),
    each read once at its end (the fixed horizon); `lift` 0 is a null experiment."""
    from datetime import UTC, datetime, timedelta

    from recommendations.experiments.metrics import ArmInfo, figures_compute

    start = datetime(2026, 11, 1, tzinfo=UTC)
    end = start + timedelta(days=14)
    first_day = (start.date() - datetime(1970, 1, 1).date()).days
    treated = control_rate * (1 + lift)
    detected = backwards = covered = 0
    for seed in range(runs):
        traffic = traffic_simulate(
            [SimulatedArm(1, people_per_arm, control_rate), SimulatedArm(2, people_per_arm, treated)],
            first_day=first_day,
            days=14,
            seed=seed,
            mean_impressions=mean_impressions,
            concentration=concentration,
        )
        figures = figures_compute(
            arms=[ArmInfo(1, "control", "", 50), ArmInfo(2, "treatment", "", 50)],
            traffic=traffic,
            items_shown={},
            catalog_size=0,
            alpha=alpha,
            power=power,
            minimum_effect=minimum_effect,
            start_at=start,
            end_at=end,
            now=end + timedelta(days=1),
        )
        verdict = figures["verdict"]
        detected += verdict["state"] == "winner" and verdict["winner_arm_id"] == 2
        backwards += verdict["state"] == "control_better"
        comparison = figures["arms"][1]["comparison"]["ctr"]
        covered += comparison["low"] <= treated - control_rate <= comparison["high"]
    return Calibration(runs, people_per_arm, detected / runs, backwards / runs, covered / runs)
