from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from users.models import Activity, User
from users.services import activity_delete, user_delete


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "display_name", "external_id", "email", "is_staff", "date_joined")
    search_fields = ("username", "display_name", "=external_id", "email")
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("Recommender", {"fields": ("external_id", "display_name")}),
    )

    # Deleting a person in the admin is the same erasure as their own request (user_delete):
    # sessions, sign-in lockout rows and the admin log about them go too, and the items their
    # words described get their community vectors rebuilt without them. The admin's own delete
    # would leave all of that behind.
    def delete_model(self, request: HttpRequest, obj: User) -> None:
        user_delete(user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            user_delete(user=user)


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

    # What a person did is theirs: staff may read it and delete it (moderation), not write it.
    # An edit here would bypass everything a write sets off (its vector, the person's interest,
    # the community text of the item it is about).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Activity | None = None) -> bool:
        return False

    # Through the service, as the person's own deletion: the items it described are marked for
    # the community rebuild and the person's interest is rebuilt without it.
    def delete_model(self, request: HttpRequest, obj: Activity) -> None:
        activity_delete(activity=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Activity]) -> None:
        with transaction.atomic():
            for activity in queryset:
                activity_delete(activity=activity)

    @admin.display(description="text")
    def short_text(self, activity: Activity) -> str:
        if not activity.text:
            return ""
        return activity.text if len(activity.text) <= 80 else activity.text[:79] + "…"
