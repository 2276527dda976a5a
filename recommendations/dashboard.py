"""Reads for the staff pages (dashboard, ranker versions): counts and rows, no scoring."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count

from catalog.models import Item
from core.models import EmbeddingStatus
from recommendations.models import EvaluationRun, RankerModel
from users.models import Activity

# Metrics drawn over ranker versions: the first of these names found in validation_metrics.
RANKER_CHART_LIMIT = 4


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


def ranker_metric_names(rankers: list[RankerModel]) -> list[str]:
    """Numeric validation metrics that ranker versions report, most widely reported first."""
    counts: dict[str, int] = {}
    for ranker in rankers:
        for name, value in (ranker.validation_metrics or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                counts[name] = counts.get(name, 0) + 1
    return sorted(counts, key=lambda name: (-counts[name], name))


def latest_evaluation() -> EvaluationRun | None:
    return EvaluationRun.objects.order_by("-created_at", "-id").first()


def failed_items(*, limit: int = 10) -> list[Item]:
    return list(
        Item.objects.filter(embedding_status=EmbeddingStatus.FAILED)
        .only("id", "title", "embedding_error")
        .order_by("-updated_at")[:limit]
    )
