"""Pages: home (for you / trending), one item (similar items, reviews), the free-text question
page, the "for you" fragment, and the staff pages (dashboard, preview as a person, pin/ban,
ranker versions)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog.models import Item, Placement
from catalog.services import item_set_placement
from core.exceptions import ApplicationError
from core.models import MAX_ID, EmbeddingStatus
from core.page_parameters import is_ascii_int, param_int, param_text
from core.queueing import queue_on_commit
from core.replicas import replica_read
from core.throttling import FREE_TEXT_THROTTLES, page_throttle_wait, throttled_page
from recommendations.experiments.replay import latest_replay_checks
from recommendations.experiments.services import (
    ArmSpec,
    ExperimentInvalid,
    experiment_create,
    experiment_metrics_refresh,
    experiment_promote,
    experiment_stop,
)
from recommendations.forms import (
    BLEND_CHOICE,
    FROZEN_CHOICE,
    TEXT_MODEL_PREFIX,
    AskForm,
    ExperimentForm,
    version_parse,
)
from recommendations.models import Experiment, ExperimentArm, ExperimentSurface, RankerModel, ReplayCheck
from recommendations.ranking.active import ranker_activate
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.popular import popular_candidates
from recommendations.serving import service as recommender
from recommendations.staff import charts, dashboard
from users.forms import ItemWordsForm
from users.models import Activity, ActivityKind, User
from users.requests import request_user
from users.services import activity_record, helpful_vote_record

logger = logging.getLogger(__name__)

ASK_SIZE = 12
FOR_YOU_MAX = 24
PREVIEW_SIZE = 20
FOR_YOU_SIZE = 12
TRENDING_SIZE = 12
SIMILAR_SIZE = 8
ITEM_FOR_YOU_SIZE = 6
REVIEWS_SHOWN = 20
# Pages ask for a fragment (a part of a page) with this header; responses vary on it.
FRAGMENT_HEADER = "X-Fragment"


def _wants_fragment(request: HttpRequest) -> bool:
    return request.headers.get(FRAGMENT_HEADER) == "1"


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Visitors are sent to sign in; signed-in people who are not staff get 403, not a login loop."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied("staff only")
        return view(request, *args, **kwargs)

    return wrapper


# --- end users ---------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def ask(request: HttpRequest) -> HttpResponse:
    """A question in plain words (any language the encoder reads) answered with items and why.

    The page's form posts the question (CSRF-checked, and a long Chinese question fits no URL);
    a signed-in person's posted question is recorded as a search. A link (GET ?q=) is answered
    the same way but records nothing: a link on another site must not write into anyone's history.
    Both run the encoder, so both count against the API's free-text budget.
    """
    posted = request.method == "POST"
    form = AskForm(request.POST if posted else (request.GET if "q" in request.GET else None))
    answer = None
    if form.is_valid():
        wait = page_throttle_wait(request, FREE_TEXT_THROTTLES)
        if wait is not None:
            message = "Too many questions in a short time."
            return throttled_page(request, wait, message=message, fragment=_wants_fragment(request))
        user = request.user if request.user.is_authenticated else None
        try:
            answer = replica_read(
                lambda: recommender.recommend_for_text(text=form.cleaned_data["q"], user=user, k=ASK_SIZE),
                user_id=user.id if user is not None else None,
            )
        except ApplicationError as error:
            form.add_error("q", error.message)
        else:
            if user is not None and posted:
                # Recorded after answering, so a question does not tilt its own answer.
                activity_record(user=user, kind=ActivityKind.SEARCH, text=form.cleaned_data["q"])
    template = "recommendations/ask_results.html" if _wants_fragment(request) else "recommendations/ask.html"
    response = render(request, template, {"form": form, "answer": answer}, status=400 if form.errors else 200)
    patch_vary_headers(response, [FRAGMENT_HEADER])
    return response


@login_required
@require_GET
def for_you(request: HttpRequest) -> HttpResponse:
    """The "for you" list as a fragment. With ?after=<activity id>, answers 202 (try again) while
    that activity's text still waits for its vector, so the list changes once it counts."""
    after = param_int(request, "after")
    k = param_int(request, "k", maximum=FOR_YOU_MAX) or FOR_YOU_SIZE
    if after is not None:
        status = (
            Activity.objects.filter(pk=after, user=request_user(request))
            .values_list("embedding_status", flat=True)
            .first()
        )
        if status == EmbeddingStatus.PENDING:
            return render(request, "recommendations/for_you_pending.html", status=202)
    person = request_user(request)
    answer = replica_read(lambda: recommender.recommend_for_user(user=person, k=k), user_id=person.id)
    return render(request, "recommendations/for_you_results.html", {"answer": answer})


# --- home and item pages ----------------------------------------------------------------------


def _trending_items(k: int) -> list[Item]:
    """Trending items (recency-weighted interactions), or the newest ones before any interaction."""
    ranked = [item_id for item_id, _score in popular_candidates(filters=ItemFilters(), k=k * 2, by="trending")]
    if ranked:
        by_id = Item.objects.exclude(placement=Placement.BANNED).in_bulk(ranked)
        return [by_id[item_id] for item_id in ranked if item_id in by_id][:k]
    return list(
        Item.objects.filter(is_active=True).exclude(placement=Placement.BANNED).order_by("-created_at", "-id")[:k]
    )


def home(request: HttpRequest) -> HttpResponse:
    """Signed in: "for you" with reasons. A visitor: trending items and a free-text question box."""
    context: dict = {"ask_form": AskForm()}
    if request.user.is_authenticated:
        person = request_user(request)
        context["answer"] = replica_read(
            lambda: recommender.recommend_for_user(user=person, k=FOR_YOU_SIZE), user_id=person.id
        )
    else:
        context["trending"] = _trending_items(TRENDING_SIZE)
    return render(request, "recommendations/home.html", context)


def _item_or_404(request: HttpRequest, pk: int) -> Item:
    # Staff may look at an inactive item (to reactivate it); everyone else gets a 404.
    items = Item.objects.all() if request.user.is_staff else Item.objects.filter(is_active=True)
    return get_object_or_404(items, pk=pk)


def _item_context(request: HttpRequest, item: Item, form: ItemWordsForm) -> dict:
    reviews = (
        Activity.objects.filter(item=item, kind__in=[ActivityKind.REVIEW, ActivityKind.COMMENT], text__isnull=False)
        .select_related("user")
        .annotate(
            helpful_count=Count("helpful_votes", filter=Q(helpful_votes__helpful=True)),
            unhelpful_count=Count("helpful_votes", filter=Q(helpful_votes__helpful=False)),
        )
        .order_by("-created_at", "-id")[:REVIEWS_SHOWN]
    )
    context = {
        "item": item,
        "similar": recommender.similar_items(item=item, k=SIMILAR_SIZE),
        "reviews": list(reviews),
        "form": form,
        "placements": Placement.choices,
    }
    if request.user.is_authenticated:
        context["answer"] = recommender.recommend_for_user(user=request.user, k=ITEM_FOR_YOU_SIZE)
    return context


def item_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Details, similar items, what people wrote, and a review form for signed-in people."""
    item = _item_or_404(request, pk)
    if request.user.is_authenticated:
        # A view is behaviour the recommender learns from (and "seen" items are not proposed again).
        activity_record(user=request.user, kind=ActivityKind.VIEW, item=item)
    return render(request, "recommendations/item.html", _item_context(request, item, ItemWordsForm()))


@login_required
@require_POST
def item_words(request: HttpRequest, pk: int) -> HttpResponse:
    """Record a review or comment. A page script gets the new review as a fragment (201) and then
    refreshes "for you" once the text's vector is made; without scripts, the item page again."""
    item = get_object_or_404(Item, pk=pk, is_active=True)
    form = ItemWordsForm(request.POST)
    fragment = _wants_fragment(request)
    if form.is_valid():
        try:
            activity = activity_record(
                user=request_user(request),
                kind=form.cleaned_data["kind"],
                item=item,
                text=form.cleaned_data["text"],
                rating=form.cleaned_data["rating"],
            )
        except ApplicationError as error:
            form.add_error("text", error.message)
        else:
            logger.info("recorded %s activity=%s item=%s", activity.kind, activity.pk, item.pk)
            if fragment:
                response = render(request, "recommendations/item_review.html", {"review": activity}, status=201)
                response["X-Activity-Id"] = str(activity.pk)
                patch_vary_headers(response, [FRAGMENT_HEADER])
                return response
            messages.success(request, "Thank you: your recommendations now take your words into account.")
            return redirect(reverse("recommendations:item", args=[item.pk]) + "#for-you")
    if fragment:
        response = render(request, "recommendations/item_words_form.html", {"form": form, "item": item}, status=400)
        patch_vary_headers(response, [FRAGMENT_HEADER])
        return response
    return render(request, "recommendations/item.html", _item_context(request, item, form), status=400)


@login_required
@require_POST
def review_helpful(request: HttpRequest, pk: int, activity_id: int) -> HttpResponse:
    """Someone else's review or comment helped (helpful=yes) or did not (helpful=no)."""
    item = get_object_or_404(Item, pk=pk, is_active=True)
    answer = request.POST.get("helpful")
    if answer not in ("yes", "no") or activity_id > MAX_ID:
        messages.error(request, 'Say "helpful" or "not helpful".')
    else:
        try:
            helpful_vote_record(user=request_user(request), activity_id=activity_id, helpful=answer == "yes")
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, "Thank you: helpful words weigh more in how this item is described.")
    return redirect(reverse("recommendations:item", args=[item.pk]) + "#reviews")


# --- staff -------------------------------------------------------------------------------------


@staff_required
@require_GET
def staff_dashboard(request: HttpRequest) -> HttpResponse:
    coverage = dashboard.embedding_coverage()
    rankers = dashboard.ranker_versions()
    oldest_first = list(reversed(rankers))
    evaluation = dashboard.latest_evaluation()
    experiment = dashboard.dashboard_experiment()
    experiment_figures = experiment.metrics if experiment is not None else {}
    context = {
        "experiment": experiment,
        "experiment_figures": experiment_figures,
        **_experiment_charts(experiment_figures or {}),
        "coverage": coverage,
        "coverage_chart": charts.stacked_bars(
            title="Embedding coverage: embedded, pending and failed rows",
            rows=[
                (
                    row.label,
                    [
                        charts.Segment("embedded", row.ok, charts.PALETTE[0]),
                        charts.Segment("pending", row.pending, charts.PALETTE[4]),
                        charts.Segment("failed", row.failed, charts.PALETTE[1]),
                    ],
                )
                for row in coverage
            ],
        ),
        "backlog": sum(row.pending for row in coverage),
        "failed_items": dashboard.failed_items(),
        "rankers": rankers,
        "active_ranker": next((ranker for ranker in rankers if ranker.is_active), None),
        "ranker_chart": charts.line_chart(
            title="Ranker validation metrics by version",
            x_labels=[f"v{ranker.version}" for ranker in oldest_first],
            series=dashboard.ranker_quality_series(oldest_first),
        ),
        "evaluation": evaluation,
        "evaluation_methods": (evaluation.figures or {}).get("methods", []) if evaluation else [],
    }
    return render(request, "recommendations/staff_dashboard.html", context)


def _find_person(text: str) -> User | None:
    if not text:
        return None
    match = Q(username=text) | Q(external_id=text)
    if is_ascii_int(text) and int(text) <= MAX_ID:
        match |= Q(pk=int(text))
    return User.objects.filter(match).order_by("pk").first()


@staff_required
@require_GET
def staff_preview(request: HttpRequest) -> HttpResponse:
    """What one person would see on their home page, with reasons and sources (not logged)."""
    wanted = param_text(request, "user")
    person = _find_person(wanted)
    context: dict[str, Any] = {"wanted": wanted, "person": person, "placements": Placement.choices}
    if person is not None:
        context["answer"] = recommender.recommend_for_user(user=person, k=PREVIEW_SIZE, log=False)
        context["recent"] = list(
            Activity.objects.filter(user=person).select_related("item").order_by("-created_at", "-id")[:10]
        )
    elif wanted:
        context["not_found"] = True
    return render(request, "recommendations/staff_preview.html", context)


@staff_required
@require_POST
def staff_item_placement(request: HttpRequest, pk: int) -> HttpResponse:
    """Pin, ban or release one item in recommendations, then back to where the control was."""
    item = get_object_or_404(Item, pk=pk)
    placement = request.POST.get("placement", "")
    if placement not in Placement.values:
        messages.error(request, "Unknown placement.")
    else:
        item_set_placement(item_ids=[item.pk], placement=placement)
        logger.info("placement item=%s placement=%s by user=%s", item.pk, placement, request.user.pk)
        messages.success(request, f"{item.title}: {Placement(placement).label}.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("recommendations:item", args=[item.pk])
    return redirect(target)


@staff_required
@require_GET
def staff_rankers(request: HttpRequest) -> HttpResponse:
    metric_names, rows = dashboard.ranker_table(dashboard.ranker_versions())
    replays = latest_replay_checks()
    context = {
        "metric_names": metric_names,
        "rows": [(ranker, values, replays.get(ranker.pk)) for ranker, values in rows],
        "blend_replay": replays.get(None),
    }
    return render(request, "recommendations/staff_rankers.html", context)


@staff_required
@require_POST
def staff_ranker_activate(request: HttpRequest, pk: int) -> HttpResponse:
    """Make a stored version the one that serves (a roll-back is an activation of an older one)."""
    ranker = get_object_or_404(RankerModel.objects.defer("artifact"), pk=pk)
    try:
        ranker_activate(ranker=ranker)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        logger.info("activated ranker=%s by user=%s", ranker.pk, request.user.pk)
        messages.success(request, f"Ranker v{ranker.version} is now active.")
    return redirect("recommendations:staff_rankers")


# --- staff: experiments ------------------------------------------------------------------------


def _version_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """The versions an arm may name, grouped by the surface that reads them: the blend and every
    ranker (with its offline validation figure and latest replay check), the frozen encoder and
    every text model (with its validation figure beside the frozen encoder's on the same
    questions, and whether its item vectors are written), so staff see them before starting."""
    replays = latest_replay_checks()
    rankers = [(BLEND_CHOICE, "the blend (no ranker)" + _replay_note(replays.get(None)))]
    for ranker in dashboard.ranker_versions():
        ndcg = _first_metric(ranker.validation_metrics, "ndcg@")
        label = f"ranker v{ranker.version} ({ranker.get_algorithm_display()})"
        if ndcg is not None:
            label += f", validation NDCG {ndcg:.4f}"
        if ranker.is_active:
            label += ", active"
        rankers.append((str(ranker.pk), label + _replay_note(replays.get(ranker.pk))))
    text_models = [(FROZEN_CHOICE, "the frozen encoder (no text model)")]
    for text_model in dashboard.text_model_versions():
        ndcg = _first_metric(text_model.validation_metrics, "ndcg@")
        frozen = _first_metric(text_model.validation_metrics, "frozen_ndcg@")
        label = f"text model v{text_model.version} ({text_model.algorithm} over {text_model.base_model})"
        if ndcg is not None:
            label += f", validation NDCG {ndcg:.4f}" + (f" (frozen encoder {frozen:.4f})" if frozen is not None else "")
        if text_model.is_active:
            label += ", active"
        if text_model.vectors_written_at is None:
            label += ", no item vectors yet"
        text_models.append((f"{TEXT_MODEL_PREFIX}{text_model.pk}", label))
    return [("Rankers (personal recommendations)", rankers), ("Text models (free text)", text_models)]


def _first_metric(metrics: dict[str, Any], prefix: str) -> float | None:
    return next((value for name, value in metrics.items() if name.startswith(prefix)), None)


def _replay_note(check: ReplayCheck | None) -> str:
    if check is None or check.figures.get("candidate_hit") is None:
        return ""
    return f", replay hit@{check.figures['k']} {check.figures['candidate_hit']:.3f}"


def _experiment_form(data: Any = None) -> ExperimentForm:
    now = timezone.now().replace(second=0, microsecond=0)
    return ExperimentForm(
        data,
        surfaces=ExperimentSurface.choices,
        versions=_version_choices(),
        initial={
            "surface": ExperimentSurface.USER,
            "start_at": now,
            "end_at": now + timedelta(days=14),
            "arm0_name": "control",
            "arm0_version": BLEND_CHOICE,
            "arm0_share": 50,
            "arm1_name": "treatment",
            "arm1_share": 50,
        },
    )


@staff_required
@require_http_methods(["GET", "POST"])
def staff_experiments(request: HttpRequest) -> HttpResponse:
    """Experiments, newest first, and the form that creates one (errors shown, nothing saved)."""
    form = _experiment_form(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                experiment = experiment_create(
                    name=form.cleaned_data["name"],
                    surface=form.cleaned_data["surface"],
                    start_at=form.cleaned_data["start_at"],
                    end_at=form.cleaned_data["end_at"],
                    arms=[_arm_spec(name, version, share) for name, version, share in form.arms()],
                    created_by=request_user(request),
                    minimum_effect=form.cleaned_data["minimum_effect"],
                    alpha=form.cleaned_data["alpha"],
                    power=form.cleaned_data["power"],
                    attribution_hours=form.cleaned_data["attribution_hours"],
                )
            except ExperimentInvalid as error:
                for field, problems in error.fields.items():
                    for problem in problems:
                        form.add_error(field if field in form.fields else None, problem)
            else:
                messages.success(request, f"Experiment {experiment.name} created.")
                return redirect("recommendations:staff_experiment", pk=experiment.pk)
        status = 400
    arms = ExperimentArm.objects.select_related("ranker", "text_model").defer(
        "ranker__artifact", "text_model__artifact", "ranker__validation_metrics", "text_model__validation_metrics"
    )
    context = {
        "form": form,
        "experiments": list(
            Experiment.objects.defer("metrics")
            .prefetch_related(Prefetch("arms", queryset=arms))
            .order_by("-start_at", "-id")
        ),
        "now": timezone.now(),
    }
    return render(request, "recommendations/staff_experiments.html", context, status=status)


def _experiment_charts(figures: dict) -> dict[str, Any]:
    days, series = figures.get("days", []), figures.get("series", {})
    return {
        "ctr_chart": charts.line_chart(
            title="Click-through rate so far, by arm and day",
            x_labels=[day[5:] for day in days],
            series={name: values["ctr"] for name, values in series.items()},
        ),
        "impressions_chart": charts.line_chart(
            title="Impressions per day, by arm",
            x_labels=[day[5:] for day in days],
            series={name: [float(value) for value in values["impressions"]] for name, values in series.items()},
        ),
    }


def _arm_spec(name: str, version: str, share: int) -> ArmSpec:
    ranker_id, text_model_id = version_parse(version)
    return ArmSpec(name=name, ranker_id=ranker_id, share=share, text_model_id=text_model_id)


def _arm_rows(experiment: Experiment, arms: list[ExperimentArm]) -> list[dict[str, Any]]:
    """Each arm with its version's offline validation figure (a text model's beside the frozen
    encoder's on the same questions) and, for rankers, the latest replay check."""
    text = experiment.surface == ExperimentSurface.TEXT
    replays = latest_replay_checks() if not text else {}
    rows = []
    for arm in arms:
        version = arm.text_model if text else arm.ranker
        metrics = version.validation_metrics if version is not None else {}
        validation = next(((name, value) for name, value in metrics.items() if name.startswith("ndcg@")), None)
        frozen = _first_metric(metrics, "frozen_ndcg@") if text else None
        rows.append(
            {
                "arm": arm,
                "versioned": version is not None,
                "control_label": "the frozen encoder (no version)" if text else "the blend (no version)",
                "validation": validation,
                "frozen": frozen,
                "replay": replays.get(arm.ranker_id),
                "replayable": not text,
            }
        )
    return rows


@staff_required
@require_GET
def staff_experiment(request: HttpRequest, pk: int) -> HttpResponse:
    """One experiment: arms, online metrics with intervals, the verdict and its assumptions,
    charts over time, promote or stop."""
    experiment = get_object_or_404(Experiment.objects.select_related("created_by", "decided_by", "promoted_arm"), pk=pk)
    arms = list(
        experiment.arms.select_related("ranker", "text_model")
        .defer("ranker__artifact", "text_model__artifact")
        .order_by("position")
    )
    figures = experiment.metrics or {}
    now = timezone.now()
    context = {
        "experiment": experiment,
        "arms": arms,
        "figures": figures,
        "arm_figures": figures.get("arms", []),
        "running": experiment.start_at <= now < experiment.end_at and not experiment.simulated,
        "not_started": now < experiment.start_at,
        "arm_rows": _arm_rows(experiment, arms),
        **_experiment_charts(figures),
    }
    return render(request, "recommendations/staff_experiment.html", context)


@staff_required
@require_POST
def staff_experiment_refresh(request: HttpRequest, pk: int) -> HttpResponse:
    """Compute the figures from the logs now (the periodic task does it every 15 minutes)."""
    experiment = get_object_or_404(Experiment, pk=pk)
    experiment_metrics_refresh(experiment_id=experiment.pk)
    messages.success(request, "Figures computed from the logs now.")
    return redirect("recommendations:staff_experiment", pk=experiment.pk)


@staff_required
@require_POST
def staff_experiment_stop(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = get_object_or_404(Experiment, pk=pk)
    try:
        experiment_stop(experiment=experiment, by=request_user(request))
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Experiment {experiment.name} stopped.")
    return redirect("recommendations:staff_experiment", pk=experiment.pk)


@staff_required
@require_POST
def staff_experiment_promote(request: HttpRequest, pk: int) -> HttpResponse:
    """The chosen arm's version becomes the active one; the experiment ends."""
    experiment = get_object_or_404(Experiment, pk=pk)
    arm_id = request.POST.get("arm", "")
    arm = experiment.arms.filter(pk=int(arm_id)).first() if is_ascii_int(arm_id) and int(arm_id) <= MAX_ID else None
    if arm is None:
        messages.error(request, "Choose an arm of this experiment.")
        return redirect("recommendations:staff_experiment", pk=experiment.pk)
    try:
        experiment_promote(experiment=experiment, arm=arm, by=request_user(request))
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Arm {arm.name} promoted: {arm.version_label} now serves everyone.")
    return redirect("recommendations:staff_experiment", pk=experiment.pk)


@staff_required
@require_POST
def staff_replay_check(request: HttpRequest) -> HttpResponse:
    """Queue a replay check of one version (or the blend) on the bulk queue."""
    wanted = request.POST.get("ranker", "")
    if wanted == BLEND_CHOICE:
        ranker_id = None
    elif is_ascii_int(wanted) and int(wanted) <= MAX_ID and RankerModel.objects.filter(pk=int(wanted)).exists():
        ranker_id = int(wanted)
    else:
        messages.error(request, "Choose a stored ranker version or the blend.")
        return redirect("recommendations:staff_rankers")
    queue_on_commit("recommendations.tasks.run_replay_check", ranker_id=ranker_id, requested_by_id=request.user.pk)
    messages.success(request, "Replay check queued: its figures appear here once the worker has run it.")
    return redirect("recommendations:staff_rankers")
