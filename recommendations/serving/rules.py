"""Business rules applied to a ranked list: staff pins first, a per-category cap, stable pages.
Exclusions (seen, inactive, banned, the caller's filters) are applied by every source's query."""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models.expressions import RawSQL

from catalog.models import Item, Placement
from core.conf import recommender_settings
from recommendations.retrieval import filters as selectors
from recommendations.retrieval.candidates import Candidate
from recommendations.retrieval.filters import ItemFilters
from users.models import Activity


def _placements(ordered: list[Candidate], pinned: list[int]) -> list[Candidate]:
    """Staff-pinned items first (in their order), then the ranked rest."""
    if not pinned:
        return ordered
    by_id = {candidate.item_id: candidate for candidate in ordered}
    first = [by_id.get(item_id) or Candidate(item_id, sources={"pinned": 0}) for item_id in pinned]
    for candidate in first:
        candidate.sources.setdefault("pinned", 0)
    return first + [candidate for candidate in ordered if candidate.item_id not in set(pinned)]


def apply_rules(
    candidates: list[Candidate], categories: dict[int, str], *, offset: int, k: int, pinned: Sequence[int] = ()
) -> list[Candidate]:
    """Order by score (ties by id: stable pages), pinned items first, cap results per category,
    cut the page. Exclusions (seen, inactive, banned, the caller's filters) were applied by
    every source's query already."""
    ordered = sorted(candidates, key=lambda candidate: (-candidate.score, candidate.item_id))
    ordered = _placements(ordered, list(pinned))
    cap = recommender_settings().max_per_category
    if cap:
        per_category: dict[str, int] = {}
        capped = []
        for candidate in ordered:
            category = categories.get(candidate.item_id, "")
            per_category[category] = per_category.get(category, 0) + 1
            if not category or per_category[category] <= cap:
                capped.append(candidate)
        ordered = capped
    return ordered[offset : offset + k]


def pinned_items(filters: ItemFilters, *, unseen_by: int | None = None) -> list[int]:
    """Items staff pinned that pass the request's filters (one small indexed query); with
    unseen_by, not those that person has seen (when the filters do not already exclude them)."""
    pinned = Item.objects.filter(filters.q(), placement=Placement.PINNED)
    if unseen_by is not None:
        # The person's items as one uncorrelated subquery (PostgreSQL hashes it once). Every
        # request answered from a kept list asks this: as NOT EXISTS (... OuterRef("id")) the
        # ORM took about 0.7 ms more of the web process's CPU to build it on machine A
        # (BENCHMARKS.md, the precomputed-list path). item_id IS NOT NULL: a NULL among the
        # ids would make NOT IN exclude every item.
        seen = RawSQL(  # noqa: S611 - the model's table name, the values bound
            f"SELECT item_id FROM {Activity._meta.db_table} "  # noqa: S608 - likewise
            "WHERE user_id = %s AND item_id IS NOT NULL AND kind = ANY(%s)",
            [unseen_by, list(recommender_settings().exclude_seen_kinds)],
        )
        pinned = pinned.exclude(id__in=seen)
    return list(pinned.order_by("id").values_list("id", flat=True)[:20])


def item_categories(candidates: dict[int, Candidate]) -> dict[int, str]:
    if not recommender_settings().max_per_category:
        return {}
    return dict(Item.objects.filter(id__in=selectors.id_array(candidates)).values_list("id", "category"))
