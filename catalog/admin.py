from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from catalog import services
from catalog.models import Item

EMBEDDING_FIELDS = ("embedding_status", "embedding_error", "embedding_model", "embedded_at", "text_hash", "vectors")


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ("title", "external_id", "category", "price", "is_active", "embedding_status", "updated_at")
    list_filter = ("is_active", "embedding_status", "category")
    search_fields = ("title", "description", "=external_id")
    readonly_fields = (*EMBEDDING_FIELDS, "created_at", "updated_at")
    list_per_page = 50
    show_full_result_count = False
    actions = ("activate", "deactivate", "queue_reembedding")
    fieldsets = (
        (
            None,
            {"fields": ("external_id", "title", "description", "category", "tags", "price", "attributes", "is_active")},
        ),
        ("Embedding", {"fields": EMBEDDING_FIELDS}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="vectors")
    def vectors(self, item: Item) -> str:
        made = item.vectors.order_by("model_name").values_list("model_name", "dimensions", "created_at")
        return (
            "; ".join(f"{name} ({dimensions} dims, {created:%Y-%m-%d %H:%M})" for name, dimensions, created in made)
            or "none"
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
