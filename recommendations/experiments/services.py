"""Experiments: creation (every rule checked, nothing saved on a bad one), promotion and
stopping (recorded with who and when), the online metrics' refresh, the seeded example."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from catalog.models import Item, ItemVector
from core.conf import recommender_settings
from core.exceptions import ApplicationError
from core.queueing import queue_on_commit
from recommendations.experiments import metrics
from recommendations.experiments.simulation import SimulatedArm, traffic_simulate
from recommendations.models import (
    Experiment,
    ExperimentArm,
    ExperimentDecision,
    ExperimentSurface,
    RankerModel,
    TextModel,
)
from recommendations.ranking.active import ranker_activate, rankers_deactivate
from recommendations.ranking.features import INDEX
from recommendations.vectors.text_model import text_model_activate, text_model_deactivate
from users.models import User

logger = logging.getLogger(__name__)

MAX_ARMS = 6
MAX_ATTRIBUTION_HOURS = 24 * 30


class ExperimentInvalid(ApplicationError):
    """What is wrong with an experiment, field by field (extra["fields"]); nothing was saved."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("the experiment is not valid", extra={"fields": fields})
        self.fields = fields


@dataclass(frozen=True)
class ArmSpec:
    """An arm to create: a ranker version (personal recommendations) and/or a text model
    version (free text); each surface reads its own and refuses the other."""

    name: str
    ranker_id: int | None  # None: the documented blend
    share: int  # percent
    text_model_id: int | None = None  # None: the frozen encoder


def _surface_lock(surface: str) -> None:
    """One experiment write per surface at a time (until the transaction ends): two staff
    creating overlapping experiments at once cannot both pass the overlap check."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"experiment-surface:{surface}"])


def _arm_problems(arms: Sequence[ArmSpec], surface: str) -> list[str]:
    problems = []
    if len(arms) < 2:
        problems.append("an experiment needs at least two arms")
    if len(arms) > MAX_ARMS:
        problems.append(f"at most {MAX_ARMS} arms")
    names = [arm.name.strip() for arm in arms]
    if any(not name for name in names):
        problems.append("every arm needs a name")
    if len(set(names)) != len(names):
        problems.append("arm names must differ")
    if surface == ExperimentSurface.SIMILAR:
        problems.append(
            "no experiment can run on similar items yet: their answers are the same for everyone and name no "
            "person, so no arm could serve anyone"
        )
        return problems
    for arm in arms:
        if arm.ranker_id is not None and surface == ExperimentSurface.TEXT:
            problems.append(
                f"arm {arm.name}: free-text answers use no ranker: an experiment there compares text-model arms "
                "(a text model version, or none for the frozen encoder)"
            )
        if arm.text_model_id is not None and surface == ExperimentSurface.USER:
            problems.append(
                f"arm {arm.name}: personal recommendations do not read a text model: an experiment there compares "
                "rankers (a version, or none for the blend)"
            )
    problems += _ranker_problems(arms)
    if surface == ExperimentSurface.TEXT:
        problems += _text_model_problems(arms)
    return problems


def _ranker_problems(arms: Sequence[ArmSpec]) -> list[str]:
    problems = []
    wanted = {arm.ranker_id for arm in arms if arm.ranker_id is not None}
    found = {row.pk: row for row in RankerModel.objects.filter(pk__in=wanted).only("id", "version", "features")}
    found_artifacts = set(RankerModel.objects.filter(pk__in=wanted).exclude(artifact=b"").values_list("id", flat=True))
    for arm in arms:
        if arm.ranker_id is None:
            continue
        ranker = found.get(arm.ranker_id)
        if ranker is None:
            problems.append(f"arm {arm.name}: ranker {arm.ranker_id} does not exist")
        elif arm.ranker_id not in found_artifacts:
            problems.append(f"arm {arm.name}: ranker v{ranker.version} is not trained (no model stored)")
        else:
            unknown = [name for name in ranker.features if name not in INDEX]
            if unknown:
                problems.append(
                    f"arm {arm.name}: ranker v{ranker.version} reads features this code does not compute "
                    f"({', '.join(unknown)})"
                )
    return problems


def _text_model_problems(arms: Sequence[ArmSpec]) -> list[str]:
    """A text model arm serves only a trained version of the encoder that reads text now, whose
    item vectors are written (its queries are searched among its own items, never the encoder's)."""
    problems = []
    wanted = {arm.text_model_id for arm in arms if arm.text_model_id is not None}
    found = {
        row.pk: row
        for row in TextModel.objects.filter(pk__in=wanted)
        .annotate(trained=~Q(artifact=b""))
        .defer("artifact", "validation_metrics")
    }
    base_model = recommender_settings().serving_model
    for arm in arms:
        if arm.text_model_id is None:
            continue
        text_model = found.get(arm.text_model_id)
        if text_model is None:
            problems.append(f"arm {arm.name}: text model {arm.text_model_id} does not exist")
        elif not text_model.trained:
            problems.append(f"arm {arm.name}: text model v{text_model.version} is not trained (no model stored)")
        elif text_model.base_model != base_model:
            problems.append(
                f"arm {arm.name}: text model v{text_model.version} adapts {text_model.base_model}, but free text is "
                f"read by {base_model} now"
            )
        elif (
            text_model.vectors_written_at is None
            or not ItemVector.objects.filter(model_name=text_model.vector_key).exists()
        ):
            problems.append(
                f"arm {arm.name}: text model v{text_model.version} has no item vectors yet: write them first "
                '(admin, Text models, "Write the item vectors")'
            )
    return problems


def _share_problems(arms: Sequence[ArmSpec]) -> list[str]:
    problems = [f"arm {arm.name}: a share is a whole percent from 1 to 99" for arm in arms if not 1 <= arm.share <= 99]
    total = sum(arm.share for arm in arms)
    if arms and total != 100:
        problems.append(f"the shares sum to {total}%, not 100%")
    return problems


def _overlapping(*, surface: str, start_at: datetime, end_at: datetime) -> Experiment | None:
    """An experiment on the surface whose time overlaps [start_at, end_at) (decided ones end at
    their decision)."""
    return (
        Experiment.objects.filter(surface=surface, start_at__lt=end_at, end_at__gt=start_at, simulated=False)
        .order_by("start_at")
        .first()
    )


def experiment_create(
    *,
    name: str,
    surface: str,
    start_at: datetime,
    end_at: datetime,
    arms: Sequence[ArmSpec],
    created_by: User | None,
    minimum_effect: float = 0.10,
    alpha: float = 0.05,
    power: float = 0.80,
    attribution_hours: int = 24,
    simulated: bool = False,
) -> Experiment:
    """Create an experiment and its arms (arm 0 is the control), or raise ExperimentInvalid
    naming every problem; nothing is saved then."""
    fields: dict[str, list[str]] = {}

    def wrong(field: str, message: str) -> None:
        fields.setdefault(field, []).append(message)

    if not name.strip():
        wrong("name", "give the experiment a name")
    if surface not in ExperimentSurface.values:
        wrong("surface", f"unknown surface {surface!r}; expected one of {', '.join(ExperimentSurface.values)}")
    if end_at <= start_at:
        wrong("end_at", "the end must be after the start")
    elif not simulated and end_at <= timezone.now():
        wrong("end_at", "the end is in the past")
    if not 0 < minimum_effect <= 10:
        wrong("minimum_effect", "the minimum effect is a relative change above 0 (0.10 = 10%)")
    if not 0 < alpha < 0.5:
        wrong("alpha", "alpha lies between 0 and 0.5")
    if not 0 < power < 1:
        wrong("power", "power lies between 0 and 1")
    if not 1 <= attribution_hours <= MAX_ATTRIBUTION_HOURS:
        wrong("attribution_hours", f"the attribution window is 1 to {MAX_ATTRIBUTION_HOURS} hours")
    for message in _share_problems(arms):
        wrong("shares", message)
    for message in _arm_problems(arms, surface):
        wrong("arms", message)
    with transaction.atomic():
        # A simulated example never runs (it ended before it was seeded): it overlaps nothing.
        if surface in ExperimentSurface.values and end_at > start_at and not simulated:
            _surface_lock(surface)
            other = _overlapping(surface=surface, start_at=start_at, end_at=end_at)
            if other is not None:
                wrong(
                    "start_at",
                    f"experiment {other.name!r} runs on {ExperimentSurface(surface).label.lower()} from "
                    f"{other.start_at:%Y-%m-%d %H:%M} to {other.end_at:%Y-%m-%d %H:%M} UTC: experiments on one "
                    "surface cannot overlap",
                )
        if fields:
            raise ExperimentInvalid(fields)
        experiment = Experiment.objects.create(
            name=name.strip(),
            surface=surface,
            start_at=start_at,
            end_at=end_at,
            minimum_effect=minimum_effect,
            alpha=alpha,
            power=power,
            attribution_hours=attribution_hours,
            simulated=simulated,
            created_by=created_by,
        )
        ExperimentArm.objects.bulk_create(
            ExperimentArm(
                experiment=experiment,
                position=position,
                name=arm.name.strip(),
                ranker_id=arm.ranker_id,
                text_model_id=arm.text_model_id,
                share=arm.share,
            )
            for position, arm in enumerate(arms)
        )
    logger.info(
        "experiment=%s created surface=%s arms=%d by user=%s", experiment.pk, surface, len(arms), _id(created_by)
    )
    return experiment


def _id(user: User | None) -> int | None:
    return user.pk if user is not None else None


def _decide(*, experiment: Experiment, decision: str, by: User, arm: ExperimentArm | None = None) -> Experiment:
    """Record the decision and end the experiment now (an experiment that had not started yet
    ends at its start: it never ran)."""
    now = timezone.now()
    Experiment.objects.select_for_update().filter(pk=experiment.pk).first()
    experiment.refresh_from_db()
    if experiment.decision:
        raise ApplicationError(f"this experiment was already {experiment.get_decision_display().lower()}")
    experiment.decision = decision
    experiment.decided_by = by
    experiment.decided_at = now
    experiment.promoted_arm = arm
    if experiment.end_at > now:
        experiment.end_at = max(now, experiment.start_at + timedelta(microseconds=1))
    experiment.save(update_fields=["decision", "decided_by", "decided_at", "promoted_arm", "end_at"])
    return experiment


def experiment_stop(*, experiment: Experiment, by: User) -> Experiment:
    """Stop the experiment: from now on everyone gets what serves outside experiments."""
    with transaction.atomic():
        experiment = _decide(experiment=experiment, decision=ExperimentDecision.STOPPED, by=by)
    logger.info("experiment=%s stopped by user=%s", experiment.pk, by.pk)
    queue_on_commit("recommendations.tasks.refresh_experiment_metrics", experiment_id=experiment.pk)
    return experiment


def experiment_promote(*, experiment: Experiment, arm: ExperimentArm, by: User) -> Experiment:
    """The arm's version becomes the active one for everyone, and the experiment ends: on
    personal recommendations its ranker (the blend arm: no ranker active), on free text its
    text model (the frozen encoder's arm: no text model active)."""
    if arm.experiment_id != experiment.pk:
        raise ApplicationError("this arm belongs to another experiment")
    if experiment.simulated:
        raise ApplicationError("a simulated experiment's arms cannot be promoted: its traffic was not real")
    with transaction.atomic():
        experiment = _decide(experiment=experiment, decision=ExperimentDecision.PROMOTED, by=by, arm=arm)
        if experiment.surface == ExperimentSurface.TEXT:
            _text_model_promote(arm)
        elif arm.ranker_id is None:
            rankers_deactivate()
        else:
            ranker_activate(ranker=RankerModel.objects.defer("artifact").get(pk=arm.ranker_id))
    logger.info("experiment=%s promoted arm=%s by user=%s", experiment.pk, arm.pk, by.pk)
    queue_on_commit("recommendations.tasks.refresh_experiment_metrics", experiment_id=experiment.pk)
    return experiment


def _text_model_promote(arm: ExperimentArm) -> None:
    base_model = recommender_settings().serving_model
    if arm.text_model_id is None:
        text_model_deactivate(base_model=base_model)
        return
    text_model = TextModel.objects.get(pk=arm.text_model_id)
    if text_model.base_model != base_model:
        raise ApplicationError(
            f"text model v{text_model.version} adapts {text_model.base_model}, but free text is read by {base_model} "
            "now: it cannot be activated"
        )
    text_model_activate(text_model=text_model)


def experiment_metrics_refresh(*, experiment_id: int) -> Experiment | None:
    """Compute the experiment's figures from the logs and keep them (a simulated example keeps
    the figures of its simulation)."""
    experiment = Experiment.objects.filter(pk=experiment_id).first()
    if experiment is None or experiment.simulated:
        return experiment
    now = timezone.now()
    figures = metrics.experiment_figures(experiment=experiment, now=now)
    Experiment.objects.filter(pk=experiment.pk).update(
        metrics=figures, metrics_computed_at=now, metrics_stale_since=None
    )
    experiment.metrics, experiment.metrics_computed_at, experiment.metrics_stale_since = figures, now, None
    logger.info("experiment=%s metrics computed people=%d", experiment.pk, sum(a["people"] for a in figures["arms"]))
    return experiment


def experiments_due() -> list[int]:
    """Experiments whose figures must be computed: running ones, and ended ones not computed
    since their end or changed since (a person deleted)."""
    now = timezone.now()
    due = []
    for experiment in Experiment.objects.filter(simulated=False, start_at__lte=now).only(
        "id", "end_at", "metrics_computed_at", "metrics_stale_since"
    ):
        running = experiment.end_at > now
        computed = experiment.metrics_computed_at
        if running or computed is None or computed < experiment.end_at or experiment.metrics_stale_since:
            due.append(experiment.pk)
    return due


def experiments_metrics_refresh_due() -> int:
    """The periodic task's work: every experiment due; returns how many were computed."""
    due = experiments_due()
    for experiment_id in due:
        experiment_metrics_refresh(experiment_id=experiment_id)
    return len(due)


def experiments_mark_changed_for_person(*, user_id: int) -> int:
    """A person is being deleted: the experiments that have their answers say their figures
    will change, and are computed again once the deletion is committed."""
    ids = list(
        Experiment.objects.filter(recommendations__user_id=user_id, simulated=False)
        .values_list("id", flat=True)
        .distinct()
    )
    if ids:
        Experiment.objects.filter(pk__in=ids, metrics_computed_at__isnull=False).update(
            metrics_stale_since=timezone.now()
        )
        for experiment_id in ids:
            queue_on_commit("recommendations.tasks.refresh_experiment_metrics", experiment_id=experiment_id)
    return len(ids)


# The example's made-up click-through rates: the blend and a ranker 12% better.
EXAMPLE_CONTROL_CTR = 0.05
EXAMPLE_LIFT = 0.12


def experiment_seed_example(*, people_per_arm: int = 6_000, seed: int = 0) -> Experiment:
    """A finished example experiment, simulated: the blend against the active ranker (or, with
    none active, against the blend again: an A/A test) over the last 14 days. Its figures come
    from simulated people (recommendations.experiments.simulation); no log or activity row is
    written. A previous example is replaced."""
    Experiment.objects.filter(simulated=True).delete()
    active = RankerModel.objects.filter(is_active=True).defer("artifact").first()
    now = timezone.now()
    start_at = (now - timedelta(days=15)).replace(hour=0, minute=0, second=0, microsecond=0)
    end_at = start_at + timedelta(days=14)
    treatment = (
        ArmSpec(name=f"ranker v{active.version}", ranker_id=active.pk, share=50)
        if active is not None
        else ArmSpec(name="the blend again (A/A)", ranker_id=None, share=50)
    )
    experiment = experiment_create(
        name="Example (simulated traffic): " + (f"ranker v{active.version} vs the blend" if active else "A/A test"),
        surface=ExperimentSurface.USER,
        start_at=start_at,
        end_at=end_at,
        arms=[ArmSpec(name="the blend", ranker_id=None, share=50), treatment],
        created_by=None,
        simulated=True,
    )
    arms = list(experiment.arms.order_by("position"))
    treatment_ctr = EXAMPLE_CONTROL_CTR * (1 + EXAMPLE_LIFT) if active is not None else EXAMPLE_CONTROL_CTR
    traffic = traffic_simulate(
        [
            SimulatedArm(arm_id=arms[0].pk, people=people_per_arm, click_rate=EXAMPLE_CONTROL_CTR),
            SimulatedArm(arm_id=arms[1].pk, people=people_per_arm, click_rate=treatment_ctr),
        ],
        first_day=(start_at.date() - datetime(1970, 1, 1).date()).days,
        days=14,
        seed=seed,
    )
    catalog_size = Item.objects.filter(is_active=True).count()
    generator = np.random.default_rng(seed + 1)
    # Which items the simulated impressions were: popular items more often (a Zipf-like draw).
    weights = 1.0 / np.arange(1, max(catalog_size, 1) + 1)
    weights /= weights.sum()
    items_shown = {
        arm.pk: int(
            len(
                np.unique(
                    generator.choice(len(weights), size=int(traffic.shown[traffic.arm_id == arm.pk].sum()), p=weights)
                )
            )
        )
        if catalog_size
        else 0
        for arm in arms
    }
    figures = metrics.figures_compute(
        arms=[
            metrics.ArmInfo(arm_id=arm.pk, name=arm.name, version=arm.version_label, share=arm.share) for arm in arms
        ],
        traffic=traffic,
        items_shown=items_shown,
        catalog_size=catalog_size,
        alpha=experiment.alpha,
        power=experiment.power,
        minimum_effect=experiment.minimum_effect,
        start_at=start_at,
        end_at=end_at,
        now=now,
    )
    figures["simulated"] = {
        "people_per_arm": people_per_arm,
        "seed": seed,
        "click_rates": [EXAMPLE_CONTROL_CTR, treatment_ctr],
        "note": "simulated people, not real traffic: no log or activity row was written",
    }
    Experiment.objects.filter(pk=experiment.pk).update(metrics=figures, metrics_computed_at=now)
    experiment.refresh_from_db()
    logger.info("seeded simulated example experiment=%s", experiment.pk)
    return experiment
