"""Why each result is shown, in words, from its evidence."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

import numpy as np

from catalog.models import Item
from recommendations.ml.language_centring import chinese_share
from recommendations.models import (
    CommunityVector,
    ItemNeighbour,
)
from recommendations.retrieval.candidates import Candidate
from recommendations.retrieval.filters import id_array
from recommendations.retrieval.person import PersonState
from recommendations.retrieval.semantic import item_vectors_for
from users.models import Activity, ActivityKind

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

# What others wrote about an item may be quoted too ("people say"): the sentences of its
# heaviest COMMUNITY_TEXTS_QUOTED positively weighted community texts, in the item's language.
COMMUNITY_TEXTS_QUOTED = 10
# A text whose Han share is at least this is Chinese (a mixed text goes with its majority).
CHINESE_FROM_SHARE = 0.5

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
    interest_matches: list[int] = []
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
            interest_matches.append(candidate.item_id)
        elif "popular" in candidate.sources:
            reasons[candidate.item_id] = f"trending in {item.category}" if item.category else "popular right now"
        else:
            reasons[candidate.item_id] = f"new in {item.category}" if item.category else "new"
    if state.interests and page:
        # Asked even when no result is found by meaning alone: one query, whatever the page holds.
        reasons.update(_community_quotes(interest_matches[:QUOTED_RESULTS], items, state, model_name))
    return reasons


def _community_quotes(
    item_ids: list[int], items: dict[int, Item], state: PersonState, model_name: str
) -> dict[int, str]:
    """'people say "..."': the sentence others wrote about each item closest to the person's
    main interest (never the person's own words), for items found by meaning alone."""
    others = community_snippets(item_ids=item_ids, items=items, model_name=model_name, exclude_user_id=state.user_id)
    texts = [sentence for item_id in item_ids for sentence in others.get(item_id, [])]
    if not texts:
        return {}
    similarities = passage_matrix(texts, model_name) @ state.interests[0]
    quotes = {}
    position = 0
    for item_id in item_ids:
        sentences = others.get(item_id, [])
        if sentences:
            scores = similarities[position : position + len(sentences)]
            quotes[item_id] = f'people say "{snippet(sentences[int(np.argmax(scores))])}"'
            position += len(sentences)
    return quotes


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


def _is_chinese(text: str) -> bool:
    return chinese_share(text) >= CHINESE_FROM_SHARE


def community_snippets(
    *, item_ids: list[int], items: dict[int, Item], model_name: str, exclude_user_id: int | None
) -> dict[int, list[str]]:
    """Per item, the sentences others wrote about it that a reason may quote: from its community
    vector's heaviest texts that pull towards it (a low-rated text that pushes away is never
    quoted as praise), in the item's own language, never words of `exclude_user_id` (the person
    asking: their own words are quoted as theirs, "you wrote", or not at all). One query, and a
    second for the texts when there is something to quote."""
    entries = dict(
        CommunityVector.objects.filter(item_id__in=id_array(item_ids), model_name=model_name).values_list(
            "item_id", "texts"
        )
    )
    wanted: dict[int, list[int]] = {}
    for item_id, texts in entries.items():
        wanted[item_id] = [
            entry["activity"] for entry in texts if entry["weight"] > 0 and entry["user"] != exclude_user_id
        ][:COMMUNITY_TEXTS_QUOTED]
    quoted_ids = [activity_id for ids in wanted.values() for activity_id in ids]
    words = dict(Activity.objects.filter(id__in=id_array(quoted_ids)).values_list("id", "text")) if quoted_ids else {}
    quoted: dict[int, list[str]] = {}
    for item_id, activity_ids in wanted.items():
        chinese = _is_chinese(items[item_id].embedding_text()) if item_id in items else False
        sentences = [
            sentence.strip()
            for activity_id in activity_ids
            for sentence in SENTENCE_END.split(words.get(activity_id) or "")
            if sentence.strip()
        ]
        quoted[item_id] = list(dict.fromkeys(sentence for sentence in sentences if _is_chinese(sentence) == chinese))
    return quoted


def passage_matrix(texts: list[str], model_name: str) -> np.ndarray:
    """Passage vectors of the texts (snippets, or an item's text for serving.second_opinion) by
    model_name, from the cache or encoded once (one batch for the new ones)."""
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
    *,
    text: str,
    query: np.ndarray,
    page: list[Candidate],
    items: dict[int, Item],
    model_name: str,
    user_id: int | None = None,
) -> dict[int, str]:
    """Each result's words closest to the text, quoted in the item's language: its own (its
    title, a sentence of its description or a tag) or what others wrote about it ("people say",
    serving.reasons.community_snippets: never the asking person's words); never the text
    itself. Results after QUOTED_RESULTS are described without a quote (their snippets would
    cost encoder time nobody reads)."""
    reasons: dict[int, str] = {}
    asked = _plain(text)
    quoted = page[:QUOTED_RESULTS]
    others = community_snippets(
        item_ids=[candidate.item_id for candidate in quoted],
        items=items,
        model_name=model_name,
        exclude_user_id=user_id,
    )
    per_item = {
        candidate.item_id: [
            (kind, words)
            for kind, words in [
                *item_snippets(items[candidate.item_id]),
                *(("people say", sentence) for sentence in others.get(candidate.item_id, [])),
            ]
            if _plain(words) != asked
        ]
        for candidate in quoted
    }
    texts = [words for snippets in per_item.values() for _kind, words in snippets]
    similarities = passage_matrix(texts, model_name) @ query if texts else np.zeros(0)
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
