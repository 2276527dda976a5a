"""Community vectors: an item described by what people wrote about it (ARCHITECTURE.md, P4).

An item's community vector (one per model) is the weighted mean of the passage vectors of its
community texts (users.community: reviews, comments and tags on it, and questions followed by a
choice of it). Its served vector, the one every query reads (ItemVector.embedding), is then

    normalise(catalog text vector + COMMUNITY_WEIGHT x community vector)

so the semantic source, free-text answers, similar items, interest vectors and the ranker's
cosine features all see it. An item nobody wrote about is served its catalog vector.

Weights (community_weights, numbers only): KIND_WEIGHTS x 0.5^(age / half-life), the age counted
from the item's newest text; a text whose writer rated the item at or below COMMUNITY_LOW_RATING
counts COMMUNITY_LOW_RATING_WEIGHT times (negative: the item moves away from those words). Spam
caps, so a few people cannot take an item over: a text one person gave to more than
COMMUNITY_SPREAD_LIMIT items counts SPREAD_LIMIT / that many on each; one person's texts on one
item weigh COMMUNITY_PERSON_CAP together at most; the mean divides by max(total weight, 1), so
an item whose only words are down-weighted spam moves little. Other people's votes on a review
or comment (users.HelpfulVote) then scale it by helpfulness(): 1 without votes or with as many
of each, towards 2 as they find it helpful, towards 0 as they do not.

Kept fresh with the dirty-flag + batch pattern: writes mark Item.community_stale
(users.community), the pending-embeddings batch (and so the beat sweep) rebuilds the marked
items in bulk, one encoder call per chunk of new texts.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from catalog.models import Item, ItemVector
from core.conf import recommender_settings
from core.vector_wire import VectorBytes, vector_from_bytes
from recommendations.ml.model_cards import model_card
from recommendations.models import CommunityTextVector, CommunityVector
from users.community import CommunityText, community_texts
from users.models import ActivityKind, ActivityVector

logger = logging.getLogger(__name__)

# What one text says about an item, by kind: a review is written about it, a tag names it, a
# question only led to it (the person may have chosen it for another reason).
KIND_WEIGHTS: dict[str, float] = {
    ActivityKind.REVIEW: 1.0,
    ActivityKind.TAG: 1.0,
    ActivityKind.COMMENT: 0.8,
    ActivityKind.SEARCH: 0.6,
    ActivityKind.CHAT: 0.4,
}
# Items per chunk of the batch: their texts are read, encoded and written in one go. MovieLens
# small's 1,572 tagged items are 2,395 short texts in P4: about 10 s of encoding on 2 cores.
COMMUNITY_CHUNK = 500


@dataclass(frozen=True)
class WeightRules:
    half_life_days: float
    low_rating: float
    low_rating_weight: float
    person_cap: float
    spread_limit: int
    max_texts: int

    @classmethod
    def from_settings(cls) -> WeightRules:
        config = recommender_settings()
        return cls(
            half_life_days=config.community_half_life_days,
            low_rating=config.community_low_rating,
            low_rating_weight=config.community_low_rating_weight,
            person_cap=config.community_person_cap,
            spread_limit=config.community_spread_limit,
            max_texts=config.community_max_texts,
        )


def _spread_key(text: CommunityText) -> tuple[int, str]:
    return (text.user_id, " ".join(text.text.split()).casefold())


# Votes a text starts with, one each way (a Bayesian mean): a single vote moves it a third of
# the way, not all of it.
HELPFUL_PRIOR = 1


def helpfulness(helpful: int, unhelpful: int) -> float:
    """2 x the share of helpful votes, smoothed by HELPFUL_PRIOR: 1.0 with no votes, in (0, 2)."""
    return 2 * (helpful + HELPFUL_PRIOR) / (helpful + unhelpful + 2 * HELPFUL_PRIOR)


def community_weights(
    texts: Sequence[CommunityText], *, rules: WeightRules, spread: dict[tuple[int, str], int]
) -> list[float]:
    """The weight of each text of ONE item (see the module's docstring). `spread`: per (person,
    normalised text), on how many items that person wrote it."""
    if not texts:
        return []
    newest = max(text.created_at for text in texts)
    weights = []
    for text in texts:
        weight = KIND_WEIGHTS.get(text.kind, 0.0)
        age_days = max((newest - text.created_at).total_seconds(), 0.0) / 86_400
        weight *= 0.5 ** (age_days / rules.half_life_days)
        if text.rating is not None and text.rating <= rules.low_rating:
            weight *= rules.low_rating_weight
        items_with_it = spread.get(_spread_key(text), 1)
        if items_with_it > rules.spread_limit:
            weight *= rules.spread_limit / items_with_it
        weights.append(weight)
    per_person: dict[int, float] = defaultdict(float)
    for text, weight in zip(texts, weights, strict=True):
        per_person[text.user_id] += abs(weight)
    # Helpfulness after the cap: the cap bounds how much one person says, the votes are what
    # others make of it (a review many found helpful may weigh more than its writer's share).
    return [
        weight * min(1.0, rules.person_cap / per_person[text.user_id]) * helpfulness(text.helpful, text.unhelpful)
        if per_person[text.user_id] > 0
        else 0.0
        for text, weight in zip(texts, weights, strict=True)
    ]


def community_vector(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray | None:
    """sum(w x v) / max(sum |w|, 1): a mean of unit vectors, shorter where they disagree, where
    the weight is negative or small. None when nothing counts."""
    total = float(np.abs(np.asarray(weights)).sum())
    if total <= 0:
        return None
    mixed = (vectors.astype(np.float64) * np.asarray(weights, dtype=np.float64)[:, None]).sum(axis=0)
    return (mixed / max(total, 1.0)).astype(np.float32)


def served_vector(text_vector: np.ndarray, community: np.ndarray | None, weight: float) -> np.ndarray:
    """normalise(catalog vector + weight x community vector); the catalog vector alone when there
    is no community vector (or they cancel out)."""
    if community is None or weight == 0:
        return text_vector
    combined = text_vector.astype(np.float64) + weight * community.astype(np.float64)
    norm = float(np.linalg.norm(combined))
    return (combined / norm).astype(np.float32) if norm > 1e-6 else text_vector


def _spread(texts: Sequence[CommunityText]) -> dict[tuple[int, str], int]:
    """On how many items each (writer, text) of these texts was written, over the whole catalog
    (not only the items rebuilt now): one query for the writers concerned."""
    writers = sorted({text.user_id for text in texts})
    if not writers:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT user_id, lower(regexp_replace(btrim(text), '\\s+', ' ', 'g')), count(DISTINCT item_id)
            FROM users_activity
            WHERE user_id = ANY(%s) AND item_id IS NOT NULL AND text IS NOT NULL AND kind = ANY(%s)
            GROUP BY 1, 2 HAVING count(DISTINCT item_id) > 1
            """,
            [writers, [str(kind) for kind in KIND_WEIGHTS]],
        )
        counted = {(user_id, text): count for user_id, text, count in cursor.fetchall()}
    # PostgreSQL's lower() and Python's casefold() agree on the texts people write; a mismatch
    # only means a count of 1 (no spread penalty) for that text.
    return counted


def _passage_vectors(texts: Sequence[CommunityText], model_name: str) -> dict[int, np.ndarray]:
    """activity id -> the text's passage vector: stored ones, else (for a model whose queries and
    passages read the same, such as MiniLM) the activity's own vector, else encoded now, all
    missing texts of the chunk in one encoder call, and stored."""
    wanted = {text.activity_id: text for text in texts}
    stored = dict(
        CommunityTextVector.objects.filter(activity_id__in=list(wanted), model_name=model_name)
        .filter(_hash_matches(wanted))
        .annotate(raw=VectorBytes("embedding"))
        .values_list("activity_id", "raw")
    )
    vectors = {activity_id: vector_from_bytes(raw) for activity_id, raw in stored.items()}
    missing = [activity_id for activity_id in wanted if activity_id not in vectors]
    card = model_card(model_name)
    if missing and card.query_prefix == card.passage_prefix:
        reused = dict(
            ActivityVector.objects.filter(activity_id__in=missing, model_name=model_name)
            .filter(_hash_matches({activity_id: wanted[activity_id] for activity_id in missing}))
            .annotate(raw=VectorBytes("embedding"))
            .values_list("activity_id", "raw")
        )
        vectors.update({activity_id: vector_from_bytes(raw) for activity_id, raw in reused.items()})
    to_encode = [activity_id for activity_id in missing if activity_id not in vectors]
    if to_encode:
        from recommendations.ml.encoder import get_encoder

        encoder = get_encoder(model_name)
        started = time.monotonic()
        encoded = encoder.encode(
            [wanted[activity_id].text for activity_id in to_encode],
            kind="passage",
            batch_size=recommender_settings().encoder_batch_size,
        ).vectors
        logger.info("community texts encoded n=%d ms=%d", len(to_encode), (time.monotonic() - started) * 1000)
        vectors.update(zip(to_encode, encoded, strict=True))
    new_rows = [activity_id for activity_id in missing if activity_id in vectors]
    if new_rows:
        now = timezone.now()
        CommunityTextVector.objects.bulk_create(
            [
                CommunityTextVector(
                    activity_id=activity_id,
                    model_name=model_name,
                    dimensions=len(vectors[activity_id]),
                    embedding=vectors[activity_id],
                    text_hash=wanted[activity_id].text_hash,
                    created_at=now,
                )
                for activity_id in new_rows
            ],
            update_conflicts=True,
            unique_fields=["activity", "model_name"],
            update_fields=["dimensions", "embedding", "text_hash", "created_at"],
        )
    return vectors


def _hash_matches(texts: dict[int, CommunityText]) -> Q:
    """Vectors made from the text as it is now (an edited text gets a new one)."""
    condition = Q(pk__in=[])
    by_hash: dict[str, list[int]] = defaultdict(list)
    for activity_id, text in texts.items():
        by_hash[text.text_hash].append(activity_id)
    for text_hash, ids in by_hash.items():
        condition |= Q(activity_id__in=ids, text_hash=text_hash)
    return condition


def community_vectors_rebuild(*, item_ids: Sequence[int], model_name: str | None = None) -> int:
    """Rebuild these items' community vectors from what people wrote about them now, and their
    served vectors. Returns how many (item, model) community vectors there are afterwards.
    model_name None: the encoder's model and every other model that has community vectors of
    these items (during an encoder change the old one still serves: a deleted person's words
    must leave its vectors too). Safe to run twice and concurrently with writes: an item written
    about meanwhile is marked again."""
    if model_name is not None:
        models = [model_name]
    else:
        present = CommunityVector.objects.filter(item_id__in=list(item_ids)).values_list("model_name", flat=True)
        models = list(dict.fromkeys([recommender_settings().encoder_model, *sorted(set(present))]))
    rules = WeightRules.from_settings()
    weight = recommender_settings().community_weight
    built = 0
    for start in range(0, len(item_ids), COMMUNITY_CHUNK):
        chunk = list(item_ids[start : start + COMMUNITY_CHUNK])
        Item.objects.filter(id__in=chunk, community_stale=True).update(community_stale=False)
        try:
            for name in models:
                built += _rebuild_chunk(chunk, model_name=name, rules=rules, weight=weight)
        except Exception:
            # Left for the next batch (the sweep), visibly: the flag is set again.
            Item.objects.filter(id__in=chunk).update(community_stale=True)
            raise
    return built


def _rebuild_chunk(item_ids: list[int], *, model_name: str, rules: WeightRules, weight: float) -> int:
    started = time.monotonic()
    texts = community_texts(item_ids=item_ids)
    vectors = _passage_vectors(texts, model_name) if texts else {}
    spread = _spread(texts)
    per_item: dict[int, list[CommunityText]] = defaultdict(list)
    for text in texts:
        if text.activity_id in vectors:
            per_item[text.item_id].append(text)
    now = timezone.now()
    rows = []
    for item_id, item_texts in per_item.items():
        # Newest first, capped: an item's words follow what it is now.
        item_texts = sorted(item_texts, key=lambda text: (text.created_at, text.activity_id), reverse=True)
        item_texts = item_texts[: rules.max_texts]
        weights = community_weights(item_texts, rules=rules, spread=spread)
        vector = community_vector(np.stack([vectors[text.activity_id] for text in item_texts]), weights)
        if vector is None:
            continue
        ordered = sorted(zip(item_texts, weights, strict=True), key=lambda pair: -abs(pair[1]))
        rows.append(
            CommunityVector(
                item_id=item_id,
                model_name=model_name,
                dimensions=len(vector),
                embedding=vector,
                n_texts=len(item_texts),
                n_people=len({text.user_id for text in item_texts}),
                texts=[
                    {"activity": text.activity_id, "user": text.user_id, "kind": text.kind, "weight": round(w, 4)}
                    for text, w in ordered
                ],
                applied_weight=None,
                built_at=now,
            )
        )
    with transaction.atomic():
        # Only items that have or had community text need their served vector written again.
        had = set(
            CommunityVector.objects.filter(item_id__in=item_ids, model_name=model_name).values_list(
                "item_id", flat=True
            )
        )
        CommunityVector.objects.filter(item_id__in=item_ids, model_name=model_name).exclude(
            item_id__in=[row.item_id for row in rows]
        ).delete()
        CommunityVector.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["item", "model_name"],
            update_fields=["dimensions", "embedding", "n_texts", "n_people", "texts", "applied_weight", "built_at"],
        )
        served_vectors_apply(item_ids=sorted(had | {row.item_id for row in rows}), model_name=model_name, weight=weight)
    logger.info(
        "community vectors rebuilt items=%d with_text=%d texts=%d ms=%d",
        len(item_ids),
        len(rows),
        len(texts),
        (time.monotonic() - started) * 1000,
    )
    return len(rows)


def served_vectors_apply(*, item_ids: Sequence[int], model_name: str, weight: float | None = None) -> int:
    """Write the served vectors of these items (catalog vector + weight x community vector) and
    record the weight. Returns the item vectors written. Items without a vector of this model yet
    are combined when theirs is written (recommendations.vectors.embedding)."""
    weight = recommender_settings().community_weight if weight is None else weight
    rows = list(
        ItemVector.objects.filter(item_id__in=list(item_ids), model_name=model_name)
        .annotate(raw=VectorBytes("embedding"), raw_text=VectorBytes("text_embedding"))
        .values_list("id", "item_id", "raw", "raw_text")
    )
    community = dict(
        CommunityVector.objects.filter(item_id__in=list(item_ids), model_name=model_name)
        .annotate(raw=VectorBytes("embedding"))
        .values_list("item_id", "raw")
    )
    updated = []
    for vector_id, item_id, raw, raw_text in rows:
        # A row written before text_embedding existed: its embedding is the catalog vector.
        text_vector = vector_from_bytes(raw_text if raw_text is not None else raw)
        extra = vector_from_bytes(community[item_id]) if item_id in community else None
        updated.append(
            ItemVector(id=vector_id, embedding=served_vector(text_vector, extra, weight), text_embedding=text_vector)
        )
    for start in range(0, len(updated), 1_000):
        ItemVector.objects.bulk_update(updated[start : start + 1_000], ["embedding", "text_embedding"])
    # Only where the served vector was written: the others wait for their catalog vector.
    CommunityVector.objects.filter(item_id__in=[row[1] for row in rows], model_name=model_name).update(
        applied_weight=weight
    )
    # The active text model adapts the served vector: its vectors of these items follow now
    # (the sweep's text_model_vectors_catch_up would find them behind, but a deleted person's
    # words must leave every vector in the same job). Imported here: text_model reads this
    # module's served vectors (served_vectors_without), the module-level import goes that way.
    from recommendations.vectors.text_model import text_model_items_refresh

    text_model_items_refresh(item_ids=[row[1] for row in rows])
    return len(updated)


def served_vectors_without(*, model_name: str, activity_ids: Collection[int]) -> dict[int, np.ndarray]:
    """The served vectors of the items these texts are part of, recombined as if the texts had
    never been written: what a question nobody has asked yet meets (the text model validates on
    them, vectors.text_model). The other texts keep the weights they were built with (the fading
    from the newest text and the per-person cap are not recomputed). Items whose served vector
    these texts do not touch are absent."""
    hidden = sorted(set(activity_ids))
    if not hidden:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT community.item_id
            FROM recommendations_communityvector AS community, jsonb_array_elements(community.texts) AS entry
            WHERE community.model_name = %s AND community.applied_weight IS NOT NULL
              AND (entry ->> 'activity')::bigint = ANY(%s)
            """,
            [model_name, hidden],
        )
        item_ids = [row[0] for row in cursor.fetchall()]
    if not item_ids:
        return {}
    hidden_set = set(hidden)
    passages = {
        activity_id: vector_from_bytes(raw)
        for activity_id, raw in CommunityTextVector.objects.filter(activity_id__in=hidden, model_name=model_name)
        .annotate(raw=VectorBytes("embedding"))
        .values_list("activity_id", "raw")
    }
    catalog = {
        item_id: vector_from_bytes(raw_text if raw_text is not None else raw)
        for item_id, raw, raw_text in ItemVector.objects.filter(item_id__in=item_ids, model_name=model_name)
        .annotate(raw=VectorBytes("embedding"), raw_text=VectorBytes("text_embedding"))
        .values_list("item_id", "raw", "raw_text")
    }
    recombined = {}
    for item_id, raw, texts, weight in (
        CommunityVector.objects.filter(item_id__in=item_ids, model_name=model_name)
        .annotate(raw=VectorBytes("embedding"))
        .values_list("item_id", "raw", "texts", "applied_weight")
    ):
        if item_id not in catalog or weight is None:
            continue
        total = sum(abs(entry["weight"]) for entry in texts)
        # community_vector's sum, before its division by max(total, 1).
        summed = vector_from_bytes(raw).astype(np.float64) * max(total, 1.0)
        for entry in texts:
            if entry["activity"] in hidden_set and entry["activity"] in passages:
                summed -= entry["weight"] * passages[entry["activity"]]
                total -= abs(entry["weight"])
        community = (summed / max(total, 1.0)).astype(np.float32) if total > 1e-6 else None
        recombined[item_id] = served_vector(catalog[item_id], community, weight)
    return recombined


def community_items_waiting(model_name: str) -> dict[str, int]:
    """What the sweep must do: items marked stale, and community vectors served with another
    weight than COMMUNITY_WEIGHT (the setting changed)."""
    weight = recommender_settings().community_weight
    return {
        "community": Item.objects.filter(Q(community_stale=True) | _behind_model(model_name)).count(),
        # Built but served with another weight (never built into a served vector: no catalog
        # vector yet, which the item's own embedding will combine).
        "community_weight": CommunityVector.objects.filter(model_name=model_name, applied_weight__isnull=False)
        .exclude(applied_weight=weight)
        .count(),
    }


def _behind_model(model_name: str) -> Q:
    """Items with a community vector of another model but none of this one (an encoder change)."""
    others = CommunityVector.objects.exclude(model_name=model_name).values("item_id")
    mine = CommunityVector.objects.filter(model_name=model_name).values("item_id")
    return Q(id__in=others) & ~Q(id__in=mine)


def community_process_stale(*, model_name: str, progress=None) -> dict[str, int]:
    """The batch's community step: rebuild every marked item, then recombine the items served
    with an old weight. Runs after the items' and texts' own vectors (the served vector needs
    the catalog vector; MiniLM's community texts reuse the texts' vectors)."""
    done = {"community": 0, "community_weight": 0}
    # After an encoder change: items described under the old model get theirs under this one.
    Item.objects.filter(_behind_model(model_name), community_stale=False).update(community_stale=True)
    stale = list(Item.objects.filter(community_stale=True).order_by("id").values_list("id", flat=True))
    for start in range(0, len(stale), COMMUNITY_CHUNK):
        chunk = stale[start : start + COMMUNITY_CHUNK]
        community_vectors_rebuild(item_ids=chunk, model_name=model_name)
        done["community"] += len(chunk)
        if progress:
            progress("community", len(chunk))
    weight = recommender_settings().community_weight
    behind = list(
        CommunityVector.objects.filter(model_name=model_name, applied_weight__isnull=False)
        .exclude(applied_weight=weight)
        .order_by("item_id")
        .values_list("item_id", flat=True)
    )
    for start in range(0, len(behind), COMMUNITY_CHUNK):
        chunk = behind[start : start + COMMUNITY_CHUNK]
        with transaction.atomic():
            served_vectors_apply(item_ids=chunk, model_name=model_name, weight=weight)
        done["community_weight"] += len(chunk)
    return done


@dataclass(frozen=True)
class CommunityEvidence:
    """How much the community says about an item: for the re-ranker's features (not read yet)."""

    n_texts: int
    n_people: int
    # cosine(catalog vector, community vector): low where people describe it otherwise.
    agreement: float


def community_evidence(*, item_ids: Sequence[int], model_name: str) -> dict[int, CommunityEvidence]:
    """Per item with community text: its counts and how close the words are to its catalog
    text. One query for all the items; items nobody wrote about are absent."""
    rows = list(
        CommunityVector.objects.filter(item_id__in=list(item_ids), model_name=model_name)
        .annotate(raw=VectorBytes("embedding"))
        .values_list("item_id", "n_texts", "n_people", "raw")
    )
    catalog = dict(
        ItemVector.objects.filter(item_id__in=[row[0] for row in rows], model_name=model_name)
        .annotate(raw=VectorBytes("text_embedding"))
        .values_list("item_id", "raw")
    )
    evidence = {}
    for item_id, n_texts, n_people, raw in rows:
        community = vector_from_bytes(raw)
        text_raw = catalog.get(item_id)
        norm = float(np.linalg.norm(community))
        agreement = (
            float(np.dot(vector_from_bytes(text_raw), community) / norm) if text_raw is not None and norm > 0 else 0.0
        )
        evidence[item_id] = CommunityEvidence(n_texts=n_texts, n_people=n_people, agreement=agreement)
    return evidence
