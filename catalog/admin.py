from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from catalog import services
from catalog.models import Item, Placement

NEIGHBOURS_SHOWN = 10

EMBEDDING_FIELDS = ("embedding_status", "embedding_error", "embedding_model", "embedded_at", "text_hash", "vectors")


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = (
        "title",
        "external_id",
        "category",
        "price",
        "is_active",
        "placement",
        "embedding_status",
        "updated_at",
    )
    list_filter = ("is_active", "placement", "embedding_status", "category")
    search_fields = ("title", "description", "=external_id")
    # Placement changes only through the pin/ban/release actions (catalog.services.item_set_placement).
    readonly_fields = (
        "placement",
        *EMBEDDING_FIELDS,
        "community_text",
        "nearest_neighbours",
        "created_at",
        "updated_at",
    )
    list_per_page = 50
    show_full_result_count = False
    actions = ("activate", "deactivate", "pin", "ban", "release", "queue_reembedding")
    fieldsets = (
        (
            None,
            {"fields": ("external_id", "title", "description", "category", "tags", "price", "attributes", "is_active")},
        ),
        ("In recommendations", {"fields": ("placement", "nearest_neighbours")}),
        ("Embedding", {"fields": EMBEDDING_FIELDS}),
        ("What people wrote about it", {"fields": ("community_text",)}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="vectors")
    def vectors(self, item: Item) -> str:
        made = item.vectors.order_by("model_name").values_list("model_name", "dimensions", "created_at")
        return (
            "; ".join(f"{name} ({dimensions} dims, {created:%Y-%m-%d %H:%M})" for name, dimensions, created in made)
            or "none"
        )

    @admin.display(description="community text")
    def community_text(self, item: Item) -> str:
        """How the item's community vector stands, per model, with a link to its texts and weights
        (the recommender's admin of community vectors)."""
        if item.pk is None:
            return "-"
        built = item.community_vectors.order_by("model_name").values_list(
            "id", "model_name", "n_texts", "n_people", "applied_weight", "built_at"
        )
        status = "waiting for the worker to rebuild it" if item.community_stale else "up to date"
        if not built:
            return f"nobody has written about it yet (served by its catalog text; {status})"
        return format_html(
            "<p>{}</p><ul>{}</ul>",
            status,
            format_html_join(
                "",
                '<li><a href="{}">{}</a>: {} texts by {} people, served with weight {}, built {}</li>',
                (
                    (
                        reverse("admin:recommendations_communityvector_change", args=[vector_id]),
                        model_name,
                        n_texts,
                        n_people,
                        "-" if weight is None else f"{weight:g}",
                        f"{built_at:%Y-%m-%d %H:%M}",
                    )
                    for vector_id, model_name, n_texts, n_people, weight, built_at in built
                ),
            ),
        )

    @admin.display(description="nearest neighbours")
    def nearest_neighbours(self, item: Item) -> str:
        """The items the recommender proposes as similar, with why (not logged)."""
        if item.pk is None:
            return "-"
        # A named upward edge (tests/test_architecture.py ALLOWED_UPWARD): staff judge an item by
        # what the recommender proposes beside it, so the item admin asks the recommender, at
        # render time only, and catalog works without it otherwise.
        from recommendations.serving.service import similar_items

        answer = similar_items(item=item, k=NEIGHBOURS_SHOWN, log=False)
        if not answer.results:
            return "none yet (no vector and no interactions)"
        return format_html(
            "<ol>{}</ol>",
            format_html_join(
                "",
                '<li><a href="{}">{}</a> <span class="quiet">{} · {} · {}</span></li>',
                (
                    (
                        reverse("admin:catalog_item_change", args=[result.item.pk]),
                        result.item.title,
                        f"{result.score:.3f}",
                        ", ".join(result.sources),
                        result.reason,
                    )
                    for result in answer.results
                ),
            ),
        )

    def save_model(self, request: HttpRequest, obj: Item, form, change: bool) -> None:
        # A text edit in the admin queues a new vector, like an import or an API write.
        services.item_save(item=obj)

    @admin.action(description="Activate selected items")
    def activate(self, request: HttpRequest, queryset: QuerySet[Item]) -> None:
        changed = services.item_set_active(item_ids=list(queryset.values_list("id", flat=True)), is_active=True)
        self.message_user(request, f"{changed} items activated.", messages.SUCCESS)

    @admin.action(description="Deactivate selected items (never recommended)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Item]) -> None:
        changed = services.item_set_active(item_ids=list(queryset.values_list("id", flat=True)), is_active=False)
        self.message_user(request, f"{changed} items deactivated.", messages.SUCCESS)

    @admin.action(description="Queue re-embedding of selected items")
    def queue_reembedding(self, request: HttpRequest, queryset: QuerySet[Item]) -> None:
        queued = services.item_queue_reembedding(item_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{queued} items queued for embedding.", messages.SUCCESS)

    def _place(self, request: HttpRequest, queryset: QuerySet[Item], placement: Placement) -> None:
        changed = services.item_set_placement(item_ids=list(queryset.values_list("id", flat=True)), placement=placement)
        self.message_user(request, f"{changed} items: {placement.label}.", messages.SUCCESS)

    @admin.action(description="Pin selected items (shown first in recommendations)")
    def pin(self, request: HttpRequest, queryset: QuerySet[Item]) -> None:
        self._place(request, queryset, Placement.PINNED)

    @admin.action(description="Ban selected items (never recommended)")
    def ban(self, request: HttpRequest, queryset: QuerySet[Item]) -> None:
        self._place(request, queryset, Placement.BANNED)

    @admin.action(description="Release selected items (ranked normally)")
    def release(self, request: HttpRequest, queryset: QuerySet[Item]) -> None:
        self._place(request, queryset, Placement.NORMAL)
