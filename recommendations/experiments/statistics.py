"""The test behind an experiment's verdict: rates per person, their confidence intervals, a
two-sided z-test per arm against the control, and a fixed horizon planned in advance.

Why per person: people, not impressions, are assigned to arms, and one person's impressions
are not independent (someone who clicks often clicks often in either arm). A rate such as the
click-through rate is a ratio of two sums over people, sum(clicks) / sum(impressions); its
variance is estimated with the delta method over people (Deng, Knoblich & Lu, "Applying the
Delta Method in Metric Analytics", KDD 2018). With one impression per person it is the
ordinary two-proportion z-test; with many, it is wider by the design effect the data show.

Why a fixed horizon: a z-test read every day and stopped at the first p < alpha is wrong far
more often than alpha. The experiment's sample size is planned (impressions per arm for the
minimum effect staff care about, at alpha and power), and the verdict is read only once every
arm has it, or the experiment has ended; before that the page shows interim figures marked as
such. Several arms: each is compared with the control at alpha / (arms - 1) (Bonferroni).

Pure numpy and the standard library: no database, so the tests can run it thousands of times.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

_NORMAL = NormalDist()


@dataclass(frozen=True)
class RateEstimate:
    """A ratio of sums over people (clicks / impressions), with its confidence interval."""

    numerator: float
    denominator: float
    people: int
    rate: float | None
    standard_error: float | None
    low: float | None
    high: float | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """A treatment arm against the control on one rate."""

    difference: float | None  # treatment rate - control rate
    relative_change: float | None  # difference / control rate
    low: float | None  # confidence interval of the difference at the comparison's alpha
    high: float | None
    z: float | None
    p_value: float | None
    alpha: float
    significant: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _quantile(probability: float) -> float:
    return _NORMAL.inv_cdf(probability)


def ratio_estimate(numerators: np.ndarray, denominators: np.ndarray, *, alpha: float) -> RateEstimate:
    """sum(numerators) / sum(denominators) over people, with a (1 - alpha) interval by the delta
    method; no interval with fewer than two people or no denominator."""
    numerators = np.asarray(numerators, dtype=float)
    denominators = np.asarray(denominators, dtype=float)
    people = int(len(denominators))
    total_numerator, total_denominator = float(numerators.sum()), float(denominators.sum())
    if total_denominator <= 0:
        return RateEstimate(total_numerator, total_denominator, people, None, None, None, None)
    rate = total_numerator / total_denominator
    if people < 2:
        return RateEstimate(total_numerator, total_denominator, people, rate, None, None, None)
    mean_denominator = total_denominator / people
    covariance = np.cov(numerators, denominators, ddof=1)
    variance = (covariance[0, 0] - 2 * rate * covariance[0, 1] + rate**2 * covariance[1, 1]) / (
        people * mean_denominator**2
    )
    standard_error = math.sqrt(max(float(variance), 0.0))
    margin = _quantile(1 - alpha / 2) * standard_error
    return RateEstimate(
        total_numerator, total_denominator, people, rate, standard_error, max(rate - margin, 0.0), rate + margin
    )


def rates_compare(control: RateEstimate, treatment: RateEstimate, *, alpha: float) -> Comparison:
    """Two-sided z-test of treatment - control (independent arms: people are in one arm only)."""
    if control.rate is None or treatment.rate is None:
        return Comparison(None, None, None, None, None, None, alpha, False)
    difference = treatment.rate - control.rate
    relative = difference / control.rate if control.rate > 0 else None
    if control.standard_error is None or treatment.standard_error is None:
        return Comparison(difference, relative, None, None, None, None, alpha, False)
    standard_error = math.sqrt(control.standard_error**2 + treatment.standard_error**2)
    if standard_error == 0:
        # Both arms constant (every person the same): no variation to test against.
        return Comparison(difference, relative, difference, difference, None, None, alpha, False)
    z = difference / standard_error
    p_value = 2 * (1 - _NORMAL.cdf(abs(z)))
    margin = _quantile(1 - alpha / 2) * standard_error
    return Comparison(
        difference, relative, difference - margin, difference + margin, z, p_value, alpha, p_value < alpha
    )


def design_effect(estimate: RateEstimate) -> float:
    """How much wider the per-person interval is than if every impression were independent
    (1 when people are alike or see one item each); never below 1, to plan conservatively."""
    if estimate.rate is None or estimate.standard_error is None or estimate.denominator <= 0:
        return 1.0
    independent = estimate.rate * (1 - estimate.rate) / estimate.denominator
    if independent <= 0:
        return 1.0
    return max(1.0, estimate.standard_error**2 / independent)


def impressions_needed(
    *, baseline_rate: float, minimum_effect: float, alpha: float, power: float, design_effect: float = 1.0
) -> int:
    """Impressions per arm for a two-sided test at `alpha` to detect a relative change of
    `minimum_effect` from `baseline_rate` with probability `power` (normal approximation)."""
    if not 0 < baseline_rate < 1:
        raise ValueError("the baseline rate must lie strictly between 0 and 1")
    treated = min(baseline_rate * (1 + minimum_effect), 1 - 1e-9)
    spread = baseline_rate * (1 - baseline_rate) + treated * (1 - treated)
    z_total = _quantile(1 - alpha / 2) + _quantile(power)
    return math.ceil(z_total**2 * spread / (treated - baseline_rate) ** 2 * design_effect)


def comparison_alpha(*, alpha: float, arms: int) -> float:
    """Each treatment arm against the control at alpha / (arms - 1) (Bonferroni)."""
    return alpha / max(arms - 1, 1)


# What the verdict rests on: shown with it on the staff pages.
ASSUMPTIONS = (
    "Primary metric: click-through rate (clicks / impressions), decided before the start; add-to-cart, "
    "purchase and dismissal rates are shown with intervals but do not decide.",
    "People are assigned at random (a stable hash) and independently of each other; the unit of "
    "analysis is the person, so one person's impressions may be correlated (delta-method variance).",
    "Two-sided z-test of each arm against the control (the first arm), normal approximation: needs enough "
    "clicks in each arm (at least 30 or so).",
    "Fixed horizon: the sample size was planned for the minimum effect, alpha and power; the verdict "
    "is read once every arm has its planned impressions or the experiment has ended, never earlier.",
    "With more than two arms each comparison uses alpha / (arms - 1) (Bonferroni).",
)
