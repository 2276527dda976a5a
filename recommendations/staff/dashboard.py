"""Reads for the staff pages (dashboard, ranker versions): counts and rows, no scoring."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count
from django.utils import timezone

from catalog.models import Item
from core.models import EmbeddingStatus
from recommendations.models import EvaluationRun, Experiment, RankerModel, TextModel
from users.models import Activity

# At most this many lines in the chart of ranker quality over versions.
RANKER_CHART_LIMIT = 6


@dataclass(frozen=True)
class EmbeddingCoverage:
    label: str
    ok: int
    pending: int
    failed: int

    @property
    def total(self) -> int:
        return self.ok + self.pending + self.failed

    @property
    def percent(self) -> float:
        return 100.0 * self.ok / self.total if self.total else 0.0


def _coverage(label: str, counts: dict[str, int]) -> EmbeddingCoverage:
    return EmbeddingCoverage(
        label=label,
        ok=counts.get(EmbeddingStatus.OK, 0),
        pending=counts.get(EmbeddingStatus.PENDING, 0),
        failed=counts.get(EmbeddingStatus.FAILED, 0),
    )


def embedding_coverage() -> list[EmbeddingCoverage]:
    """Items and text activities by embedding status (two grouped counts)."""
    items = dict(Item.objects.values_list("embedding_status").annotate(n=Count("id")).order_by())
    texts = dict(
        Activity.objects.exclude(embedding_status=EmbeddingStatus.NO_TEXT)
        .values_list("embedding_status")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [_coverage("Items", items), _coverage("Texts", texts)]


def ranker_versions() -> list[RankerModel]:
    """Every ranker version, newest first, without its (large) artifact."""
    return list(RankerModel.objects.defer("artifact").order_by("-version"))


def text_model_versions() -> list[TextModel]:
    """Every text model version, newest first, without its artifact."""
    return list(TextModel.objects.defer("artifact").order_by("-version"))


# Validation figures that measure ranking quality (0..1, higher is better): drawn over versions.
QUALITY_PREFIXES = ("ndcg", "recall", "mrr", "precision", "map")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def ranker_flat_metrics(ranker: RankerModel) -> dict[str, float]:
    """A version's numeric validation figures, nested ones flattened ("single_sources" -> "<name> alone")."""
    flat: dict[str, float] = {}
    for name, value in (ranker.validation_metrics or {}).items():
        if _is_number(value):
            flat[name] = float(value)
        elif isinstance(value, dict) and name == "single_sources":
            flat.update({f"{source} alone": float(score) for source, score in value.items() if _is_number(score)})
    return flat


def _is_quality(name: str) -> bool:
    return name.startswith(QUALITY_PREFIXES) or name == "blend" or name.endswith(" alone")


def ranker_metric_names(rankers: list[RankerModel]) -> list[str]:
    """Every numeric figure the versions report: quality figures first, then the others (sizes, seconds)."""
    names: dict[str, int] = {}
    for ranker in rankers:
        for name in ranker_flat_metrics(ranker):
            names[name] = names.get(name, 0) + 1
    return sorted(names, key=lambda name: (not _is_quality(name), -names[name], name))


def ranker_quality_series(rankers: list[RankerModel]) -> dict[str, list[float | None]]:
    """Quality figures per version, in the order of `rankers` (None where a version lacks one)."""
    flat = [ranker_flat_metrics(ranker) for ranker in rankers]
    names = [name for name in ranker_metric_names(rankers) if _is_quality(name)][:RANKER_CHART_LIMIT]
    return {name: [metrics.get(name) for metrics in flat] for name in names}


def ranker_table(rankers: list[RankerModel]) -> tuple[list[str], list[tuple[RankerModel, list[float | None]]]]:
    """Column names and, per version, its figures in that order."""
    names = ranker_metric_names(rankers)
    rows = []
    for ranker in rankers:
        flat = ranker_flat_metrics(ranker)
        rows.append((ranker, [flat.get(name) for name in names]))
    return names, rows


def latest_evaluation() -> EvaluationRun | None:
    return EvaluationRun.objects.order_by("-created_at", "-id").first()


def failed_items(*, limit: int = 10) -> list[Item]:
    return list(
        Item.objects.filter(embedding_status=EmbeddingStatus.FAILED)
        .only("id", "title", "embedding_error")
        .order_by("-updated_at")[:limit]
    )


def dashboard_experiment() -> Experiment | None:
    """The experiment the dashboard shows: one running now, else the one that started last
    (a simulated example included: the page labels it)."""
    now = timezone.now()
    running = Experiment.objects.filter(start_at__lte=now, end_at__gt=now, simulated=False).order_by("start_at").first()
    return running or Experiment.objects.filter(start_at__lte=now).order_by("-start_at", "-id").first()
