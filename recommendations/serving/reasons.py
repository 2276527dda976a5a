"""Why each result is shown, in words, from its evidence."""

from __future__ import annotations

import numpy as np

from catalog.models import Item
from recommendations.models import (
    ItemNeighbour,
)
from recommendations.retrieval.candidates import Candidate
from recommendations.retrieval.filters import id_array
from recommendations.retrieval.person import PersonState
from recommendations.retrieval.semantic import item_vectors_for
from users.models import ActivityKind

SNIPPET_LENGTH = 80


# A person's own words are quoted as the reason only when they are this close to the item.
QUOTE_MIN_SIMILARITY = 0.35


VERBS: dict[str, str] = {
    ActivityKind.PURCHASE: "you bought",
    ActivityKind.RATING: "you rated",
    ActivityKind.REVIEW: "you reviewed",
    ActivityKind.ADD_TO_CART: "you added to your cart",
    ActivityKind.COMMENT: "you commented on",
    ActivityKind.TAG: "you tagged",
}


def snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_LENGTH else text[: SNIPPET_LENGTH - 1].rstrip() + "…"


def reasons_for_user(
    state: PersonState, page: list[Candidate], items: dict[int, Item], model_name: str
) -> dict[int, str]:
    """The evidence behind each result: their own words, the item of theirs that led to it, or
    the trend it belongs to."""
    reasons: dict[int, str] = {}
    page_ids = [candidate.item_id for candidate in page]
    # Behaviour: the person's item that contributes most to each result.
    strongest: dict[int, tuple[float, int]] = {}
    if state.history:
        links = ItemNeighbour.objects.filter(
            model__is_active=True, item_id__in=id_array(state.history), neighbour_id__in=page_ids
        ).values_list("neighbour_id", "item_id", "weight")
        for neighbour_id, item_id, weight in links:
            if weight > strongest.get(neighbour_id, (0.0, 0))[0]:
                strongest[neighbour_id] = (weight, item_id)
    anchors = Item.objects.in_bulk({item_id for _weight, item_id in strongest.values()})
    # Text: the person's own words closest to each result.
    texts = state.texts
    item_vectors = item_vectors_for(item_ids=page_ids, model_name=model_name) if texts else {}
    text_matrix = np.stack([vector for _text, vector in texts]) if texts else None
    for candidate in page:
        item = items[candidate.item_id]
        if "pinned" in candidate.sources:
            reasons[candidate.item_id] = "featured"
            continue
        if text_matrix is not None and candidate.item_id in item_vectors:
            similarities = text_matrix @ item_vectors[candidate.item_id]
            best = int(np.argmax(similarities))
            if similarities[best] >= QUOTE_MIN_SIMILARITY and ("semantic" in candidate.sources or not strongest):
                reasons[candidate.item_id] = f'you wrote: "{snippet(texts[best][0])}"'
                continue
        if candidate.item_id in strongest:
            anchor = anchors[strongest[candidate.item_id][1]]
            kind, rating = state.evidence.get(anchor.id, ("view", None))
            verb = VERBS.get(kind, "you looked at")
            stars = f" {rating:g} stars" if kind == ActivityKind.RATING and rating is not None else ""
            reasons[candidate.item_id] = f"because {verb} {anchor.title}{stars}"
        elif "semantic" in candidate.sources:
            reasons[candidate.item_id] = "close to what you are interested in"
        elif "popular" in candidate.sources:
            reasons[candidate.item_id] = f"trending in {item.category}" if item.category else "popular right now"
        else:
            reasons[candidate.item_id] = f"new in {item.category}" if item.category else "new"
    return reasons
