"""What people wrote about items: the texts that describe an item to the rest of the community.

Two ways a person's words come to be about an item:
- a text written on the item itself: a review, a comment or a tag (an activity with text and item);
- a search or a chat message followed, within COMMUNITY_SEARCH_WINDOW seconds, by a click, an
  add to cart or a purchase of the item by the same person: the question they chose it for.

These selectors read users.Activity only; recommendations.vectors.community turns the texts into
the items' community vectors. Each text carries the rating its writer gave the item, where one
exists (on the text itself, else their latest rating or review of the item), so negative words
can count as such.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from catalog.models import Item
from core.conf import recommender_settings
from users.models import Activity, ActivityKind

# Words written on the item itself, and questions that lead to an item by the choice after them.
ITEM_TEXT_KINDS = (ActivityKind.REVIEW, ActivityKind.COMMENT, ActivityKind.TAG)
QUESTION_KINDS = (ActivityKind.SEARCH, ActivityKind.CHAT)
CHOICE_KINDS = (ActivityKind.CLICK, ActivityKind.ADD_TO_CART, ActivityKind.PURCHASE)
RATED_KINDS = (ActivityKind.RATING, ActivityKind.REVIEW)


@dataclass(frozen=True)
class CommunityText:
    activity_id: int
    item_id: int
    user_id: int
    kind: str
    text: str
    text_hash: str
    rating: float | None
    created_at: datetime
    # Other people's votes on a review or comment (users.HelpfulVote); none on other texts.
    helpful: int = 0
    unhelpful: int = 0


def _window() -> int:
    return recommender_settings().community_search_window


def _kinds(kinds: Iterable[str]) -> list[str]:
    return [str(kind) for kind in kinds]


def community_texts(*, item_ids: Sequence[int]) -> list[CommunityText]:
    """Every text that describes one of these items, with its writer's rating of the item."""
    if not item_ids:
        return []
    ids = list(item_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT written.id, written.item_id, written.user_id, written.kind, written.text, written.text_hash,
                   written.rating, written.created_at,
                   (SELECT count(*) FROM users_helpfulvote AS vote
                    WHERE vote.activity_id = written.id AND vote.helpful),
                   (SELECT count(*) FROM users_helpfulvote AS vote
                    WHERE vote.activity_id = written.id AND NOT vote.helpful)
            FROM users_activity AS written
            WHERE written.item_id = ANY(%(ids)s) AND written.kind = ANY(%(item_text_kinds)s)
              AND written.text IS NOT NULL AND written.text <> ''
            UNION ALL
            SELECT DISTINCT ON (question.id, choice.item_id)
                   question.id, choice.item_id, question.user_id, question.kind, question.text,
                   question.text_hash, NULL, question.created_at, 0, 0
            FROM users_activity AS choice
            JOIN users_activity AS question
              ON question.user_id = choice.user_id
             AND question.kind = ANY(%(question_kinds)s)
             AND question.created_at <= choice.created_at
             AND question.created_at >= choice.created_at - make_interval(secs => %(window)s)
            WHERE choice.item_id = ANY(%(ids)s) AND choice.kind = ANY(%(choice_kinds)s)
            """,
            {
                "ids": ids,
                "item_text_kinds": _kinds(ITEM_TEXT_KINDS),
                "question_kinds": _kinds(QUESTION_KINDS),
                "choice_kinds": _kinds(CHOICE_KINDS),
                "window": _window(),
            },
        )
        rows = cursor.fetchall()
        if not rows:
            return []
        # The writers' own ratings of the items, latest first: a tag or a question carries none.
        cursor.execute(
            """
            SELECT DISTINCT ON (user_id, item_id) user_id, item_id, rating
            FROM users_activity
            WHERE item_id = ANY(%(ids)s) AND kind = ANY(%(rated_kinds)s) AND rating IS NOT NULL
              AND user_id = ANY(%(users)s)
            ORDER BY user_id, item_id, created_at DESC, id DESC
            """,
            {"ids": ids, "rated_kinds": _kinds(RATED_KINDS), "users": sorted({row[2] for row in rows})},
        )
        ratings = {(user_id, item_id): rating for user_id, item_id, rating in cursor.fetchall()}
    return [
        CommunityText(
            activity_id=activity_id,
            item_id=item_id,
            user_id=user_id,
            kind=kind,
            text=text,
            text_hash=hash_,
            rating=rating if rating is not None else ratings.get((user_id, item_id)),
            created_at=created_at,
            helpful=helpful,
            unhelpful=unhelpful,
        )
        for activity_id, item_id, user_id, kind, text, hash_, rating, created_at, helpful, unhelpful in rows
    ]


def items_described_by(*, user_id: int | None = None, activity_ids: Sequence[int] | None = None) -> set[int]:
    """The items whose community text includes words of this person (or of these activities):
    the items they wrote on, and the items chosen within the window after their questions (or,
    for a choice among the activities, after a question of its person)."""
    if user_id is None and activity_ids is None:
        raise ValueError("name the person or the activities")
    scope = "a.user_id = %(user_id)s" if user_id is not None else "a.id = ANY(%(activity_ids)s)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT a.item_id FROM users_activity AS a
            WHERE {scope} AND a.item_id IS NOT NULL AND a.kind = ANY(%(item_text_kinds)s)
              AND a.text IS NOT NULL AND a.text <> ''
            UNION
            SELECT choice.item_id FROM users_activity AS a
            JOIN users_activity AS choice
              ON choice.user_id = a.user_id AND choice.kind = ANY(%(choice_kinds)s)
             AND choice.created_at >= a.created_at
             AND choice.created_at <= a.created_at + make_interval(secs => %(window)s)
            WHERE {scope} AND a.kind = ANY(%(question_kinds)s)
            UNION
            SELECT a.item_id FROM users_activity AS a
            WHERE {scope} AND a.kind = ANY(%(choice_kinds)s) AND EXISTS (
                SELECT 1 FROM users_activity AS question
                WHERE question.user_id = a.user_id AND question.kind = ANY(%(question_kinds)s)
                  AND question.created_at <= a.created_at
                  AND question.created_at >= a.created_at - make_interval(secs => %(window)s))
            """,  # noqa: S608 - only one of two fixed conditions is interpolated
            {
                "user_id": user_id,
                "activity_ids": list(activity_ids or []),
                "item_text_kinds": _kinds(ITEM_TEXT_KINDS),
                "question_kinds": _kinds(QUESTION_KINDS),
                "choice_kinds": _kinds(CHOICE_KINDS),
                "window": _window(),
            },
        )
        return {item_id for (item_id,) in cursor.fetchall() if item_id is not None}


def community_mark_stale(*, item_ids: Iterable[int]) -> int:
    """The pending-embeddings batch rebuilds these items' community vectors."""
    ids = sorted(set(item_ids))
    if not ids:
        return 0
    return Item.objects.filter(id__in=ids, community_stale=False).update(community_stale=True)


def community_mark_stale_for(*, activity_ids: Sequence[int]) -> int:
    """After these activities were written (or before they go): mark the items they describe."""
    if not activity_ids:
        return 0
    return community_mark_stale(item_ids=items_described_by(activity_ids=activity_ids))


def has_community_words(activity: Activity) -> bool:
    """Whether an activity can change an item's community text (cheap test before a query)."""
    return activity.kind in ITEM_TEXT_KINDS or activity.kind in QUESTION_KINDS or activity.kind in CHOICE_KINDS
