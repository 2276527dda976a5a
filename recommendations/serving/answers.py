"""What the recommender answers, and the log of what it showed (Recommendation rows)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone
from psycopg.types.json import Jsonb

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
    # The experiment and arm that answered (recommendations.serving.arms); None outside experiments.
    experiment_id: int | None = None
    arm_id: int | None = None


def answer_log(
    *,
    context: str,
    user: User | None,
    results: list[Result],
    query_text: str = "",
    anchor: Item | None = None,
    ranker_id: int | None = None,
    requested_by: User | None = None,
    experiment_id: int | None = None,
    arm_id: int | None = None,
) -> str:
    """Log the answer (a Recommendation and one RecommendedItem per result) in ONE statement.

    Every answer is logged, on the request's path: as a transaction of its own (BEGIN, the
    Recommendation, the bulk insert of its items, COMMIT) it cost four round trips to the
    primary per request (BENCHMARKS.md "Where a request's time goes"); one INSERT whose WITH
    inserts the Recommendation is atomic by itself and costs one.

    Its commit does not wait for the WAL to reach the disk (synchronous_commit off for this
    statement's own transaction only): waiting was 4 ms a request (9 ms p99) on the development
    machines, the largest single part of an answer from a kept list (BENCHMARKS.md "API
    throughput"). The row is committed and visible at once, and a clean shutdown of PostgreSQL
    writes it; what a crash of PostgreSQL itself (not of a web process) can lose is the answers
    logged in its last 3 x wal_writer_delay (0.6 s by default). Inside a caller's transaction the
    setting would reach the caller's writes too, so there the statement commits with the
    transaction, as durably as the rest of it.
    """
    recommendation_id = uuid.uuid4()
    recommendations = Recommendation._meta.db_table
    shown = RecommendedItem._meta.db_table
    connection = connections[DEFAULT_DB_ALIAS]  # always the primary (a write), whatever the request reads from
    # Evaluated once, for the one Recommendation row the statement always inserts.
    asynchronous_commit = "" if connection.in_atomic_block else ", set_config('synchronous_commit', 'off', true)"
    statement = (
        f"WITH recommendation AS ("  # noqa: S608 - table names from the models, values bound
        f" INSERT INTO {recommendations}"
        " (id, user_id, context, query_text, anchor_item_id, ranker_id, requested_by_id, experiment_id, arm_id,"
        f" created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id{asynchronous_commit})"
        f" INSERT INTO {shown} (recommendation_id, item_id, position, score, sources, reason)"
        " SELECT recommendation.id, shown.item_id, shown.position, shown.score, shown.sources, shown.reason"
        " FROM recommendation, unnest(%s::bigint[], %s::smallint[], %s::float8[], %s::jsonb[], %s::text[])"
        " AS shown(item_id, position, score, sources, reason)"
    )
    parameters = [
        recommendation_id,
        user.pk if user is not None else None,
        context,
        query_text,
        anchor.pk if anchor is not None else None,
        ranker_id,
        requested_by.pk if requested_by is not None else None,
        experiment_id,
        arm_id,
        timezone.now(),
        [result.item.pk for result in results],
        list(range(len(results))),
        [float(result.score) for result in results],
        [Jsonb(result.sources) for result in results],
        [result.reason for result in results],
    ]
    with connection.cursor() as cursor:
        cursor.execute(statement, parameters)
    return str(recommendation_id)


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
