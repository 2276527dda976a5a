from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.conf import recommender_settings
from recommendations.models import (
    CommunityVector,
    Experiment,
    ExperimentArm,
    RankerModel,
    Recommendation,
    RecommendedItem,
    TextModel,
    UserInterest,
)
from recommendations.vectors.text_model import (
    TextModelError,
    text_model_activate,
    text_model_deactivate,
    text_model_vectors_write,
)
from users.models import Activity

# Texts listed on a community vector's page, heaviest first (it may hold COMMUNITY_MAX_TEXTS).
COMMUNITY_TEXTS_SHOWN = 100


@admin.register(UserInterest)
class UserInterestAdmin(admin.ModelAdmin):
    list_display = ("user", "cluster", "embedding_model", "n_events", "weight", "updated_at")
    list_filter = ("embedding_model",)
    search_fields = ("=user__username", "=user__external_id")
    list_select_related = ("user",)
    readonly_fields = ("user", "cluster", "embedding_model", "n_events", "weight", "updated_at")
    exclude = ("embedding",)

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(RankerModel)
class RankerModelAdmin(admin.ModelAdmin):
    list_display = ("version", "algorithm", "is_active", "trained_from", "trained_until", "created_at")
    list_filter = ("algorithm", "is_active")
    readonly_fields = (
        "version",
        "algorithm",
        "features",
        "trained_from",
        "trained_until",
        "validation_metrics",
        "is_active",
        "created_at",
    )

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(TextModel)
class TextModelAdmin(admin.ModelAdmin):
    list_display = (
        "version",
        "algorithm",
        "base_model",
        "is_active",
        "validation_ndcg",
        "frozen_ndcg",
        "validation_questions",
        "trained_from",
        "trained_until",
        "created_at",
    )
    list_filter = ("is_active", "base_model")
    readonly_fields = (
        "version",
        "algorithm",
        "base_model",
        "dimensions",
        "trained_from",
        "trained_until",
        "training_pairs",
        "validation_metrics",
        "match_floor",
        "vectors_written_at",
        "is_active",
        "notes",
        "created_at",
    )
    actions = ("activate", "write_item_vectors", "back_to_frozen_encoder")

    def has_add_permission(self, request) -> bool:
        return False

    def _metric(self, text_model: TextModel, prefix: str) -> float | None:
        return next(
            (value for key, value in text_model.validation_metrics.items() if key.startswith(prefix)),
            None,
        )

    @admin.display(description="validation NDCG")
    def validation_ndcg(self, text_model: TextModel) -> float | None:
        return self._metric(text_model, "ndcg@")

    @admin.display(description="frozen encoder NDCG")
    def frozen_ndcg(self, text_model: TextModel) -> float | None:
        return self._metric(text_model, "frozen_ndcg@")

    @admin.display(description="validation questions")
    def validation_questions(self, text_model: TextModel) -> int | None:
        return text_model.validation_metrics.get("validation_questions")

    @admin.action(description="Activate the selected version (writes its item vectors first)")
    def activate(self, request, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", level="error")
            return
        text_model = text_model_activate(text_model=queryset.get())
        self.message_user(request, f"text model v{text_model.version} answers free text now")

    @admin.action(description="Write the item vectors (to serve in an experiment's arm, without activating)")
    def write_item_vectors(self, request, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version whose item vectors to write.", level="error")
            return
        text_model = queryset.get()
        try:
            written = text_model_vectors_write(text_model=text_model)
        except TextModelError as error:
            self.message_user(request, error.message, level="error")
            return
        self.message_user(
            request, f"text model v{text_model.version}: {written} item vectors written; an experiment may name it now"
        )

    @admin.action(description="Answer free text with the frozen encoder again")
    def back_to_frozen_encoder(self, request, queryset) -> None:
        base_models = set(queryset.values_list("base_model", flat=True))
        for base_model in base_models:
            text_model_deactivate(base_model=base_model)
        self.message_user(request, f"the frozen encoder answers free text for {', '.join(sorted(base_models))}")


class RecommendedItemInline(admin.TabularInline):
    model = RecommendedItem
    fields = ("position", "item", "score", "sources", "reason", "impressed_at", "clicked_at", "dismissed_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Recommendation)
class RecommendationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "context", "user", "ranker", "experiment", "arm")
    list_filter = ("context",)
    list_select_related = ("user", "ranker", "experiment", "arm")
    readonly_fields = (
        "id",
        "user",
        "context",
        "query_text",
        "anchor_item",
        "ranker",
        "experiment",
        "arm",
        "created_at",
    )
    inlines = (RecommendedItemInline,)
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False


class ExperimentArmInline(admin.TabularInline):
    model = ExperimentArm
    fields = ("position", "name", "ranker", "text_model", "share")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    """Read-only here: experiments are created, promoted and stopped on the staff pages
    (/staff/experiments/), where every rule is checked and each decision is recorded."""

    list_display = ("name", "surface", "start_at", "end_at", "decision", "decided_by", "simulated")
    list_filter = ("surface", "decision", "simulated")
    list_select_related = ("decided_by",)
    readonly_fields = (
        "name",
        "surface",
        "start_at",
        "end_at",
        "minimum_effect",
        "alpha",
        "power",
        "attribution_hours",
        "simulated",
        "created_by",
        "created_at",
        "decision",
        "decided_by",
        "decided_at",
        "promoted_arm",
        "metrics_computed_at",
        "metrics_stale_since",
    )
    exclude = ("metrics",)
    inlines = (ExperimentArmInline,)


@admin.register(CommunityVector)
class CommunityVectorAdmin(admin.ModelAdmin):
    """What people wrote about an item, as the recommender weighs it: each text with its writer,
    kind and weight (negative: a low rating pushes the item away from those words)."""

    list_display = ("item", "model_name", "n_texts", "n_people", "vector_status", "built_at")
    list_filter = ("model_name",)
    search_fields = ("item__title", "=item__external_id")
    list_select_related = ("item",)
    readonly_fields = ("item", "model_name", "n_texts", "n_people", "vector_status", "built_at", "weighted_texts")
    exclude = ("embedding", "texts", "applied_weight", "dimensions")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="vector status")
    def vector_status(self, vector: CommunityVector) -> str:
        weight = recommender_settings().community_weight
        if vector.item.community_stale:
            return "stale: new or deleted words wait for the worker"
        if vector.applied_weight is None:
            return "built; the item's served vector waits for its catalog vector"
        if vector.applied_weight != weight:
            return f"served with weight {vector.applied_weight:g}; the setting is now {weight:g} (the sweep recombines)"
        return f"served: catalog vector + {weight:g} x this vector"

    @admin.display(description="texts and weights")
    def weighted_texts(self, vector: CommunityVector) -> str:
        shown = vector.texts[:COMMUNITY_TEXTS_SHOWN]
        activities = Activity.objects.select_related("user").in_bulk([entry["activity"] for entry in shown])
        rows = [
            (
                f"{entry['weight']:+.3f}",
                entry["kind"],
                reverse("admin:users_activity_change", args=[entry["activity"]]),
                str(activities[entry["activity"]].user),
                activities[entry["activity"]].text or "",
            )
            for entry in shown
            if entry["activity"] in activities
        ]
        more = len(vector.texts) - len(shown)
        return format_html(
            "<table><tr><th>weight</th><th>kind</th><th>by</th><th>text</th></tr>{}</table>{}",
            format_html_join("", '<tr><td>{}</td><td>{}</td><td><a href="{}">{}</a></td><td>{}</td></tr>', rows),
            f"and {more} lighter texts" if more > 0 else "",
        )
