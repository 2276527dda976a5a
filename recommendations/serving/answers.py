"""What the recommender answers, and the log of what it showed (Recommendation rows)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction

from catalog.models import Item
from recommendations.models import (
    Recommendation,
    RecommendedItem,
)
from recommendations.retrieval.candidates import Candidate
from users.models import User

DEFAULT_PAGE = 20
# A free-text answer's closeness (Answer.match): something is close to the text, or nothing is.
MATCH_CLOSE = "close"
MATCH_NONE = "none"


@dataclass
class Result:
    item: Item
    score: float
    sources: list[str]
    reason: str


@dataclass
class Answer:
    results: list[Result]
    ranker: str
    fallback: bool
    recommendation_id: str | None = None
    notes: list[str] = field(default_factory=list)
    ranker_id: int | None = None  # the RankerModel that ordered the results; None: not a trained one
    # Free-text answers only: MATCH_CLOSE or MATCH_NONE, and the best candidate's cosine similarity.
    match: str | None = None
    best_similarity: float | None = None


def answer_log(
    *,
    context: str,
    user: User | None,
    results: list[Result],
    query_text: str = "",
    anchor: Item | None = None,
    ranker_id: int | None = None,
    requested_by: User | None = None,
) -> str:
    with transaction.atomic():
        recommendation = Recommendation.objects.create(
            user=user,
            context=context,
            query_text=query_text,
            anchor_item=anchor,
            ranker_id=ranker_id,
            requested_by=requested_by,
        )
        RecommendedItem.objects.bulk_create(
            RecommendedItem(
                recommendation=recommendation,
                item=result.item,
                position=position,
                score=result.score,
                sources=result.sources,
                reason=result.reason,
            )
            for position, result in enumerate(results)
        )
    return str(recommendation.id)


def answer_build(
    page: list[Candidate],
    items: dict[int, Item],
    reasons: dict[int, str],
    notes: list[str],
    *,
    ranker: str = "blend",
    ranker_id: int | None = None,
    fallback: bool = True,
) -> Answer:
    results = [
        Result(
            item=items[candidate.item_id],
            score=round(candidate.score, 6),
            sources=sorted(candidate.sources, key=candidate.sources.__getitem__),
            reason=reasons[candidate.item_id],
        )
        for candidate in page
    ]
    return Answer(results=results, ranker=ranker, ranker_id=ranker_id, fallback=fallback, notes=notes)
