"""Online metrics per arm, from the logs: what each arm showed and what people did with it.

The log is the answers (Recommendation rows naming the experiment and arm) and their items
(RecommendedItem: shown; impressed, clicked, dismissed as clients report them). From them, per
arm, person and day (`traffic_read`, one grouped query):
- impressions: items shown in the arm's answers (what the log knows was served; `seen` counts
  the items clients reported on screen, where they report it);
- clicks and dismissals: the feedback on those items;
- add-to-cart and purchase: the person's activity of that kind on a shown item within the
  experiment's attribution window after the answer (each showing counts once);
- coverage: distinct items an arm showed, over the active catalog.
`figures_compute` (pure numpy, also fed by the simulation) turns that into rates with
intervals, the comparison with the control, the plan's progress and the verdict
(recommendations.experiments.statistics).
Only answers to the person themselves on the experiment's surface count (context "user" for
personal recommendations, not staff look-ups; "text" for free text).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection

from catalog.models import Item
from recommendations.experiments import statistics
from recommendations.models import (
    Experiment,
    ExperimentSurface,
    Recommendation,
    RecommendationContext,
    RecommendedItem,
)
from users.models import Activity, ActivityKind

# Until the control has this many impressions its click-through rate is too rough to plan
# with: the plan assumes PLANNING_BASELINE_CTR meanwhile (and says so).
PLAN_MIN_IMPRESSIONS = 1_000
PLANNING_BASELINE_CTR = 0.05

COUNTS = ("shown", "seen", "clicks", "carts", "purchases", "dismissals")
# Rate name -> its numerator; every rate is over impressions (items shown).
RATES = {"ctr": "clicks", "add_to_cart_rate": "carts", "purchase_rate": "purchases", "dismissal_rate": "dismissals"}


@dataclass(frozen=True)
class Traffic:
    """Columns of (arm, person, day) rows: what each person was shown and did, per day."""

    arm_id: np.ndarray
    person_id: np.ndarray
    day: np.ndarray  # days since 1970-01-01 (UTC)
    shown: np.ndarray
    seen: np.ndarray
    clicks: np.ndarray
    carts: np.ndarray
    purchases: np.ndarray
    dismissals: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> Traffic:
        columns = list(zip(*rows, strict=True)) if rows else [()] * 9
        return cls(*(np.asarray(column, dtype=np.int64) for column in columns))


@dataclass(frozen=True)
class ArmInfo:
    arm_id: int
    name: str
    version: str
    share: int


# The logged context of the answers an experiment on each surface gave.
SURFACE_CONTEXTS = {
    ExperimentSurface.USER: RecommendationContext.USER,
    ExperimentSurface.TEXT: RecommendationContext.TEXT,
    ExperimentSurface.SIMILAR: RecommendationContext.SIMILAR,
}


def _day_number(value: date) -> int:
    return (value - date(1970, 1, 1)).days


def traffic_read(*, experiment: Experiment) -> Traffic:
    """Per (arm, person, day): shown, seen, clicked, carted and bought (attributed), dismissed."""
    activity = Activity._meta.db_table
    statement = f"""
        SELECT r.arm_id, r.user_id, (r.created_at AT TIME ZONE 'UTC')::date AS day,
               count(*), count(ri.impressed_at), count(ri.clicked_at),
               count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM {activity} a WHERE a.user_id = r.user_id AND a.item_id = ri.item_id
                   AND a.kind = %s AND a.created_at >= r.created_at AND a.created_at < r.created_at + %s)),
               count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM {activity} a WHERE a.user_id = r.user_id AND a.item_id = ri.item_id
                   AND a.kind = %s AND a.created_at >= r.created_at AND a.created_at < r.created_at + %s)),
               count(ri.dismissed_at)
        FROM {RecommendedItem._meta.db_table} ri
        JOIN {Recommendation._meta.db_table} r ON r.id = ri.recommendation_id
        WHERE r.experiment_id = %s AND r.context = %s AND r.arm_id IS NOT NULL AND r.user_id IS NOT NULL
        GROUP BY 1, 2, 3
    """  # noqa: S608 - table names from the models, values as parameters
    window = timedelta(hours=experiment.attribution_hours)
    parameters: list[Any] = [
        ActivityKind.ADD_TO_CART,
        window,
        ActivityKind.PURCHASE,
        window,
        experiment.pk,
        SURFACE_CONTEXTS[ExperimentSurface(experiment.surface)],
    ]
    with connection.cursor() as cursor:
        cursor.execute(statement, parameters)
        rows = [(arm, person, _day_number(day), *counts) for arm, person, day, *counts in cursor.fetchall()]
    return Traffic.from_rows(rows)


def items_shown_read(*, experiment: Experiment) -> dict[int, int]:
    """Distinct items each arm showed."""
    statement = f"""
        SELECT r.arm_id, count(DISTINCT ri.item_id)
        FROM {RecommendedItem._meta.db_table} ri
        JOIN {Recommendation._meta.db_table} r ON r.id = ri.recommendation_id
        WHERE r.experiment_id = %s AND r.context = %s AND r.arm_id IS NOT NULL AND r.user_id IS NOT NULL
        GROUP BY 1
    """  # noqa: S608 - table names from the models
    with connection.cursor() as cursor:
        cursor.execute(statement, [experiment.pk, SURFACE_CONTEXTS[ExperimentSurface(experiment.surface)]])
        return dict(cursor.fetchall())


def _per_person(traffic: Traffic, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Each count summed per person (people of the masked rows)."""
    _, person_index = np.unique(traffic.person_id[mask], return_inverse=True)
    return {name: np.bincount(person_index, weights=getattr(traffic, name)[mask]) for name in COUNTS}


def _day_label(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=int(day))).isoformat()


def figures_compute(
    *,
    arms: list[ArmInfo],
    traffic: Traffic,
    items_shown: dict[int, int],
    catalog_size: int,
    alpha: float,
    power: float,
    minimum_effect: float,
    start_at: datetime,
    end_at: datetime,
    now: datetime,
) -> dict:
    """Rates, intervals, the comparison with the control (arm 0), the plan and the verdict."""
    alpha_each = statistics.comparison_alpha(alpha=alpha, arms=len(arms))
    per_arm: list[dict[str, Any]] = []
    estimates: dict[int, dict[str, statistics.RateEstimate]] = {}
    for arm in arms:
        mask = traffic.arm_id == arm.arm_id
        people = _per_person(traffic, mask)
        totals = {name: int(values.sum()) for name, values in people.items()}
        estimates[arm.arm_id] = {
            rate: statistics.ratio_estimate(people[numerator], people["shown"], alpha=alpha_each)
            for rate, numerator in RATES.items()
        }
        shown_items = items_shown.get(arm.arm_id, 0)
        per_arm.append(
            {
                "arm_id": arm.arm_id,
                "name": arm.name,
                "version": arm.version,
                "share": arm.share,
                "people": int(len(people["shown"])),
                "impressions": totals["shown"],
                **{name: totals[name] for name in COUNTS if name != "shown"},
                "items_shown": shown_items,
                "coverage": shown_items / catalog_size if catalog_size else None,
                "rates": {rate: estimate.as_dict() for rate, estimate in estimates[arm.arm_id].items()},
            }
        )
    control = arms[0]
    for row, arm in zip(per_arm[1:], arms[1:], strict=True):
        row["comparison"] = {
            rate: statistics.rates_compare(
                estimates[control.arm_id][rate], estimates[arm.arm_id][rate], alpha=alpha_each
            ).as_dict()
            for rate in RATES
        }
    plan = _plan(
        control=estimates[control.arm_id]["ctr"],
        smallest=min(row["impressions"] for row in per_arm),
        alpha_each=alpha_each,
        power=power,
        minimum_effect=minimum_effect,
        start_at=start_at,
        end_at=end_at,
        now=now,
    )
    return {
        "arms": per_arm,
        "catalog_size": catalog_size,
        "alpha": alpha,
        "alpha_per_comparison": alpha_each,
        "confidence_label": f"{1 - alpha_each:.1%}",
        "plan": plan,
        **_series(arms, traffic),
        "verdict": _verdict(per_arm, plan=plan, alpha_each=alpha_each),
        "assumptions": list(statistics.ASSUMPTIONS),
    }


def _plan(
    *,
    control: statistics.RateEstimate,
    smallest: int,
    alpha_each: float,
    power: float,
    minimum_effect: float,
    start_at: datetime,
    end_at: datetime,
    now: datetime,
) -> dict:
    """Impressions each arm needs, how far the smallest arm is, and the days that remain at its pace."""
    observed = control.rate is not None and control.denominator >= PLAN_MIN_IMPRESSIONS and 0 < control.rate < 1
    baseline = control.rate if observed and control.rate is not None else PLANNING_BASELINE_CTR
    effect = statistics.design_effect(control) if observed else 1.0
    needed = statistics.impressions_needed(
        baseline_rate=baseline, minimum_effect=minimum_effect, alpha=alpha_each, power=power, design_effect=effect
    )
    ended = now >= end_at
    elapsed_days = max((min(now, end_at) - start_at).total_seconds() / 86_400, 1 / 24)
    pace = smallest / elapsed_days
    remaining = max(needed - smallest, 0)
    days_needed = remaining / pace if pace > 0 else None
    days_left = max((end_at - now).total_seconds() / 86_400, 0.0)
    return {
        "baseline_ctr": baseline,
        "baseline_from": "the control so far"
        if observed
        else f"assumed ({PLANNING_BASELINE_CTR:.0%}) until the control has {PLAN_MIN_IMPRESSIONS:,} impressions",
        "design_effect": round(effect, 3),
        "minimum_effect": minimum_effect,
        "power": power,
        "impressions_needed_per_arm": needed,
        "smallest_arm_impressions": smallest,
        "impressions_still_needed": remaining,
        "impressions_per_day_per_arm": round(pace, 1),
        "days_still_needed": None if days_needed is None else round(days_needed, 1),
        "days_left": round(days_left, 1),
        "reached": remaining == 0,
        "ended": ended,
        "reachable_by_end": remaining == 0 or (days_needed is not None and days_needed <= days_left),
    }


def _series(arms: list[ArmInfo], traffic: Traffic) -> dict:
    """Per day: impressions of each arm and its click-through rate so far (cumulative)."""
    days = sorted({int(day) for day in traffic.day})
    series: dict[str, dict[str, list]] = {}
    for arm in arms:
        mask = traffic.arm_id == arm.arm_id
        shown = [int(traffic.shown[mask & (traffic.day == day)].sum()) for day in days]
        clicks = [int(traffic.clicks[mask & (traffic.day == day)].sum()) for day in days]
        cumulative_shown, cumulative_clicks = np.cumsum(shown), np.cumsum(clicks)
        series[arm.name] = {
            "impressions": shown,
            "ctr": [
                round(float(c) / float(s), 5) if s else None
                for c, s in zip(cumulative_clicks, cumulative_shown, strict=True)
            ],
        }
    return {"days": [_day_label(day) for day in days], "series": series}


def _percent(value: float) -> str:
    return f"{value:+.1%}"


def _verdict(per_arm: list[dict], *, plan: dict, alpha_each: float) -> dict:
    """The verdict on the primary metric, or why there is none yet (fixed horizon: no peeking)."""
    control = per_arm[0]
    if not plan["reached"] and not plan["ended"]:
        days = plan["days_still_needed"]
        pace = f"about {days:g} more days at the current pace" if days is not None else "no traffic yet"
        return {
            "state": "collecting",
            "winner_arm_id": None,
            "text": (
                f"Interim figures, not a verdict: each arm needs {plan['impressions_needed_per_arm']:,} impressions "
                f"and the smallest has {plan['smallest_arm_impressions']:,} ({pace}). Reading the test before "
                "then inflates false positives."
            ),
        }
    confidence = f"{1 - alpha_each:.0%}"
    better: list[tuple[dict, dict]] = []
    worse: list[tuple[dict, dict]] = []
    for row in per_arm[1:]:
        ctr = row["comparison"]["ctr"]
        if ctr["significant"]:
            (better if ctr["difference"] > 0 else worse).append((row, ctr))
    caveat = (
        ""
        if plan["reached"]
        else " The experiment ended before its planned sample: a real effect of the minimum size may have been missed."
    )
    if better:
        row, ctr = max(better, key=lambda pair: pair[1]["difference"])
        change = f" ({_percent(ctr['relative_change'])})" if ctr["relative_change"] is not None else ""
        return {
            "state": "winner",
            "winner_arm_id": row["arm_id"],
            "text": (
                f"{row['name']} has a higher click-through rate than {control['name']}: "
                f"{ctr['difference']:+.4f}{change}, p = {ctr['p_value']:.3g}, {confidence} interval of the difference "
                f"[{ctr['low']:+.4f}, {ctr['high']:+.4f}].{caveat}"
            ),
        }
    if worse:
        names = ", ".join(row["name"] for row, _ in worse)
        return {
            "state": "control_better",
            "winner_arm_id": control["arm_id"],
            "text": (
                f"{control['name']} (the control) has a higher click-through rate than {names} at {confidence}.{caveat}"
            ),
        }
    return {
        "state": "no_difference",
        "winner_arm_id": None,
        "text": f"No arm's click-through rate differs from {control['name']}'s at {confidence}.{caveat}",
    }


def experiment_figures(*, experiment: Experiment, now: datetime | None = None) -> dict:
    """The experiment's figures from the logs now (three queries: traffic, items, catalog size)."""
    now = now or datetime.now(tz=UTC)
    arms = [
        ArmInfo(arm_id=arm.pk, name=arm.name, version=arm.version_label, share=arm.share)
        for arm in experiment.arms.select_related("ranker", "text_model")
        .defer("ranker__artifact", "text_model__artifact")
        .order_by("position")
    ]
    return figures_compute(
        arms=arms,
        traffic=traffic_read(experiment=experiment),
        items_shown=items_shown_read(experiment=experiment),
        catalog_size=Item.objects.filter(is_active=True).count(),
        alpha=experiment.alpha,
        power=experiment.power,
        minimum_effect=experiment.minimum_effect,
        start_at=experiment.start_at,
        end_at=experiment.end_at,
        now=now,
    )
