from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from users.models import Activity, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "display_name", "external_id", "email", "is_staff", "date_joined")
    search_fields = ("username", "display_name", "=external_id", "email")
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("Recommender", {"fields": ("external_id", "display_name")}),
    )


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "kind", "item", "short_text", "rating", "embedding_status")
    list_filter = ("kind", "embedding_status")
    search_fields = ("=user__username", "=user__external_id", "text")
    list_select_related = ("user", "item")
    raw_id_fields = ("user", "item")
    readonly_fields = (
        "embedding_status",
        "embedding_error",
        "embedding_model",
        "embedded_at",
        "text_hash",
        "source_key",
    )
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False

    @admin.display(description="text")
    def short_text(self, activity: Activity) -> str:
        if not activity.text:
            return ""
        return activity.text if len(activity.text) <= 80 else activity.text[:79] + "…"
