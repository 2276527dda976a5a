"""Why each result is shown, in words, from its evidence."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

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


# Free-text answers quote each of the first QUOTED_RESULTS items; their words (title, each
# sentence of the description, each tag) are encoded once per process and kept (the LRU below:
# 10,000 snippets of 384 floats are about 15 MB). Measured in BENCHMARKS.md ("Reasons").
QUOTED_RESULTS = 20
SNIPPET_CACHE_SIZE = 10_000
# A sentence ends at . ! ? followed by a space (not "2.5-layer"), or at a CJK full stop.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？；])")

_snippet_vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_snippet_lock = threading.Lock()


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


def item_snippets(item: Item) -> list[tuple[str, str]]:
    """The item's own words a reason may quote: ("named", title), ("says", a sentence of the
    description), ("tagged", a tag), each once."""
    snippets = [("named", item.title.strip())]
    snippets += [("says", sentence.strip()) for sentence in SENTENCE_END.split(item.description or "")]
    snippets += [("tagged", tag.strip()) for tag in item.tags or []]
    seen: set[str] = set()
    kept = []
    for kind, words in snippets:
        if words and words not in seen:
            seen.add(words)
            kept.append((kind, words))
    return kept


def _snippet_matrix(texts: list[str], model_name: str) -> np.ndarray:
    """Passage vectors of the snippets, from the cache or encoded once (one batch for the new ones)."""
    from recommendations.ml.encoder import get_encoder

    with _snippet_lock:
        missing = [text for text in dict.fromkeys(texts) if (model_name, text) not in _snippet_vectors]
    if missing:
        vectors = get_encoder(model_name).encode(missing, kind="passage").vectors
        with _snippet_lock:
            for text, vector in zip(missing, vectors, strict=True):
                _snippet_vectors[(model_name, text)] = vector
            while len(_snippet_vectors) > SNIPPET_CACHE_SIZE:
                _snippet_vectors.popitem(last=False)
    with _snippet_lock:
        rows = []
        for text in texts:
            key = (model_name, text)
            vector = _snippet_vectors.get(key)
            if vector is None:  # evicted by a concurrent request between the two steps: rare
                vector = get_encoder(model_name).encode([text], kind="passage").vectors[0]
            else:
                _snippet_vectors.move_to_end(key)
            rows.append(vector)
    return np.stack(rows)


def snippet_vectors_reset() -> None:
    with _snippet_lock:
        _snippet_vectors.clear()


def _plain(text: str) -> str:
    return " ".join(text.split()).casefold().rstrip(".!?。！？")


def reasons_for_text(
    *, text: str, query: np.ndarray, page: list[Candidate], items: dict[int, Item], model_name: str
) -> dict[int, str]:
    """Each result's own words closest to the text (its title, a sentence of its description or a
    tag), quoted in the item's language; never the text itself. Results after QUOTED_RESULTS
    are described without a quote (their snippets would cost encoder time nobody reads)."""
    reasons: dict[int, str] = {}
    asked = _plain(text)
    quoted = page[:QUOTED_RESULTS]
    per_item = {
        candidate.item_id: [
            (kind, words) for kind, words in item_snippets(items[candidate.item_id]) if _plain(words) != asked
        ]
        for candidate in quoted
    }
    texts = [words for snippets in per_item.values() for _kind, words in snippets]
    similarities = _snippet_matrix(texts, model_name) @ query if texts else np.zeros(0)
    position = 0
    for candidate in page:
        snippets = per_item.get(candidate.item_id)
        if not snippets:
            reasons[candidate.item_id] = "close in meaning to your words"
            continue
        scores = similarities[position : position + len(snippets)]
        position += len(snippets)
        kind, words = snippets[int(np.argmax(scores))]
        reasons[candidate.item_id] = f'{kind} "{snippet(words)}"'
    return reasons
