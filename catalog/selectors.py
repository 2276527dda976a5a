from django.db.models import Count, Q, QuerySet

from catalog.models import Item


def item_list_active(*, query: str = "", category: str = "") -> QuerySet[Item]:
    items = Item.objects.filter(is_active=True)
    if query:
        items = items.filter(Q(title__icontains=query) | Q(description__icontains=query))
    if category:
        items = items.filter(category=category)
    return items.only("external_id", "title", "description", "category", "tags", "price")


def item_category_counts() -> list[dict]:
    return list(
        Item.objects.filter(is_active=True)
        .exclude(category="")
        .values("category")
        .annotate(n_items=Count("id"))
        .order_by("category")
    )


def item_embedding_progress() -> dict[str, int]:
    counts = dict(Item.objects.values_list("embedding_status").annotate(n=Count("id")).order_by())
    return {"total": sum(counts.values()), **counts}
