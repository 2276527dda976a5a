from django.contrib import admin

from recommendations.models import Experiment, ExperimentArm, RankerModel, Recommendation, RecommendedItem, UserInterest


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
    fields = ("position", "name", "ranker", "share")
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

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
