"""Recommendations over the API: for the signed-in person, for a text, similar items, feedback."""

from __future__ import annotations

from typing import cast

from django.shortcuts import get_object_or_404
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.apis import ItemSummarySerializer, item_get_or_404
from catalog.item_fields import MAX_CATEGORY_LENGTH, MAX_TAG_LENGTH
from core.api_fields import CleanTextField, PlainDecimalField, StrictIntegerField
from core.idempotency import idempotent
from core.models import MAX_ID
from core.replicas import replica_read
from core.throttling import FREE_TEXT_THROTTLES
from recommendations.models import FeedbackKind
from recommendations.retrieval.filters import ItemFilters
from recommendations.serving.answers import MATCH_CLOSE, MATCH_NONE, Answer
from recommendations.serving.feedback import feedback_record
from recommendations.serving.service import recommend_for_text, recommend_for_user, similar_items
from users.models import User
from users.requests import request_user

MAX_K = 100
# Deep pages cost candidates (each source proposes CANDIDATES_PER_SOURCE + offset + k), and the
# HNSW search breadth follows that number up to pgvector's limit of 1,000: with the default 200
# candidates, offset + k stays at or below 600 + 200.
MAX_OFFSET = 500
MAX_FILTER_VALUES = 20


class FiltersSerializer(serializers.Serializer):
    """What the caller allows. In a query string, repeat a parameter for several values."""

    category = serializers.ListField(
        child=serializers.CharField(max_length=MAX_CATEGORY_LENGTH),
        required=False,
        max_length=MAX_FILTER_VALUES,
        help_text="Any of these categories.",
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=MAX_TAG_LENGTH),
        required=False,
        max_length=MAX_FILTER_VALUES,
        help_text="Items with any of these tags.",
    )
    price_min = PlainDecimalField(max_digits=12, decimal_places=2, min_value=0, required=False)
    price_max = PlainDecimalField(max_digits=12, decimal_places=2, min_value=0, required=False)
    k = StrictIntegerField(min_value=1, max_value=MAX_K, default=20, help_text="Results per page.")
    offset = StrictIntegerField(min_value=0, max_value=MAX_OFFSET, default=0, help_text="Results to skip.")

    def validate(self, data: dict) -> dict:
        low, high = data.get("price_min"), data.get("price_max")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"price_max": ["must not be below price_min"]})
        return data

    @staticmethod
    def filters_of(data: dict) -> ItemFilters:
        return ItemFilters(
            categories=tuple(data.get("category", ())),
            tags=tuple(data.get("tags", ())),
            price_min=data.get("price_min"),
            price_max=data.get("price_max"),
        )


class ResultSerializer(serializers.Serializer):
    position = serializers.IntegerField(help_text="0-based, counted from the first page.")
    item = ItemSummarySerializer()
    score = serializers.FloatField()
    sources = serializers.ListField(
        child=serializers.CharField(),
        help_text="Candidate sources that proposed it: behaviour, semantic, popular, fresh.",
    )
    reason = serializers.CharField(help_text="Why it is recommended, in words.")


class AnswerSerializer(serializers.Serializer):
    recommendation_id = serializers.UUIDField(
        allow_null=True, help_text="Send it back with feedback (impression, click, dismiss)."
    )
    ranker = serializers.CharField()
    fallback = serializers.BooleanField(help_text="True while no trained ranker is active (documented blend).")
    notes = serializers.ListField(child=serializers.CharField())
    k = serializers.IntegerField()
    offset = serializers.IntegerField()
    next_offset = serializers.IntegerField(allow_null=True, help_text="Offset of the next page; null on the last.")
    results = ResultSerializer(many=True)


class TextAnswerSerializer(AnswerSerializer):
    match = serializers.ChoiceField(
        choices=[MATCH_CLOSE, MATCH_NONE],
        help_text=(
            'How close the answer is to the text. "close": the best item is at least as close as the '
            "serving model's calibrated floor, and each reason quotes the item's words nearest to the "
            'text. "none": nothing in the catalog is close; the results are popular items instead.'
        ),
    )


def _answer_data(answer: Answer, *, k: int, offset: int) -> dict:
    serializer = AnswerSerializer if answer.match is None else TextAnswerSerializer
    return serializer(
        {
            "match": answer.match,
            "recommendation_id": answer.recommendation_id,
            "ranker": answer.ranker,
            "fallback": answer.fallback,
            "notes": answer.notes,
            "k": k,
            "offset": offset,
            "next_offset": offset + k if len(answer.results) == k and offset + k <= MAX_OFFSET else None,
            "results": [
                {
                    "position": offset + position,
                    "item": result.item,
                    "score": result.score,
                    "sources": result.sources,
                    "reason": result.reason,
                }
                for position, result in enumerate(answer.results)
            ],
        }
    ).data


ANSWER_EXAMPLE = {
    "recommendation_id": "6f1c9b8e-3a52-4d0e-9d6c-2f4a7e1b0c11",
    "ranker": "blend",
    "fallback": True,
    "notes": ["no trained ranker is active: results use the documented blend"],
    "k": 2,
    "offset": 0,
    "next_offset": 2,
    "results": [
        {
            "position": 0,
            "item": {
                "id": 17,
                "external_id": "sku-17",
                "title": "Two-person backpacking tent",
                "category": "Outdoor",
                "tags": ["camping"],
                "price": "219.00",
            },
            "score": 1.18,
            "sources": ["behaviour", "semantic"],
            "reason": "because you bought Alpine hiking boots",
        },
        {
            "position": 1,
            "item": {
                "id": 21,
                "external_id": "sku-21",
                "title": "Camping gas stove",
                "category": "Outdoor",
                "tags": [],
                "price": None,
            },
            "score": 0.74,
            "sources": ["popular"],
            "reason": "trending in Outdoor",
        },
    ],
}


# The example's results, typed (ANSWER_EXAMPLE's values are of mixed types).
EXAMPLE_RESULTS: list[dict] = cast(list[dict], ANSWER_EXAMPLE["results"])
TEXT_RESULTS_EXAMPLE = [
    {**EXAMPLE_RESULTS[0], "sources": ["semantic"], "reason": 'says "Seam-taped fly sheet for heavy rain."'},
    {**EXAMPLE_RESULTS[1], "sources": ["semantic"], "reason": 'tagged "camping"'},
]


# Per-person answer: no browser or proxy cache keeps it (Cache-Control: no-store, private).
@method_decorator(never_cache, name="dispatch")
class RecommendationForUserApi(APIView):
    """Recommendations for the signed-in person (signed-in callers only; 401 otherwise).

    Staff may add ?user=<id> to see anyone's; anyone else asking for another person gets 403.
    Every answer is logged: its recommendation_id ties later feedback to what was shown. A staff
    look-up is logged as one (context "staff", who asked): it is not in the person's export and
    takes no feedback.
    """

    permission_classes = [IsAuthenticated]

    class FilterSerializer(FiltersSerializer):
        user = StrictIntegerField(
            min_value=1, max_value=MAX_ID, required=False, help_text="Staff only: whose recommendations."
        )

    @extend_schema(
        tags=["recommendations"],
        parameters=[FilterSerializer],
        responses={200: AnswerSerializer},
        examples=[OpenApiExample("Two results", value=ANSWER_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request) -> Response:
        params = self.FilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        person = request_user(request)
        if "user" in data and data["user"] != request.user.id:
            if not request.user.is_staff:
                raise PermissionDenied("Only staff may ask for another person's recommendations.")
            person = get_object_or_404(User, id=data["user"])
        # Reads on a replica (core.replicas); the person's own recent writes are read where
        # they have arrived.
        answer = replica_read(
            lambda: recommend_for_user(
                user=person,
                k=data["k"],
                offset=data["offset"],
                filters=FiltersSerializer.filters_of(data),
                requested_by=request_user(request),
            ),
            user_id=person.id,
        )
        return Response(_answer_data(answer, k=data["k"], offset=data["offset"]))


class RecommendationForTextApi(APIView):
    """Items that answer a free text (a search, a customer-service question). Anyone may call it.

    Throttled per address for anonymous callers and per person for signed-in ones (the encoder
    runs on every request); a signed-in caller's answer leans gently towards their interests.
    """

    permission_classes = [AllowAny]
    throttle_classes = FREE_TEXT_THROTTLES

    class InputSerializer(FiltersSerializer):
        text = CleanTextField(help_text="The question or search, at most RECOMMENDER MAX_TEXT_LENGTH characters.")

    @extend_schema(
        tags=["recommendations"],
        request=InputSerializer,
        responses={200: TextAnswerSerializer},
        examples=[
            OpenApiExample(
                "A customer-service question",
                value={"text": "my tent leaks when it rains, what can I buy?", "k": 5, "category": ["Outdoor"]},
                request_only=True,
            ),
            OpenApiExample(
                "Two results",
                value={**ANSWER_EXAMPLE, "match": MATCH_CLOSE, "results": TEXT_RESULTS_EXAMPLE},
                response_only=True,
            ),
            OpenApiExample(
                "Nothing close: popular items",
                value={
                    **ANSWER_EXAMPLE,
                    "match": MATCH_NONE,
                    "notes": ["nothing in the catalog is a close match for this text: these are popular items instead"],
                    "results": [{**EXAMPLE_RESULTS[1], "sources": ["popular"], "reason": "popular in Outdoor"}],
                },
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        person = request.user if request.user.is_authenticated else None
        answer = replica_read(
            lambda: recommend_for_text(
                text=data["text"],
                user=person,
                k=data["k"],
                offset=data["offset"],
                filters=FiltersSerializer.filters_of(data),
            ),
            user_id=person.id if person is not None else None,
        )
        return Response(_answer_data(answer, k=data["k"], offset=data["offset"]))


class ItemSimilarApi(APIView):
    """Items similar to one active item (people chose both, or described alike). Anyone may call it."""

    permission_classes = [AllowAny]

    @extend_schema(tags=["recommendations"], parameters=[FiltersSerializer], responses={200: AnswerSerializer})
    def get(self, request: Request, item_id: int) -> Response:
        def answer() -> Response:
            # The item too is read where the answer is (core.replicas).
            item = item_get_or_404(item_id=item_id, include_inactive=request.user.is_staff)
            params = FiltersSerializer(data=request.query_params)
            params.is_valid(raise_exception=True)
            data = params.validated_data
            similar = similar_items(
                item=item, k=data["k"], offset=data["offset"], filters=FiltersSerializer.filters_of(data)
            )
            return Response(_answer_data(similar, k=data["k"], offset=data["offset"]))

        return replica_read(answer, user_id=None)


class FeedbackCreateApi(APIView):
    """Report what the person did with shown items: impression, click or dismiss. Idempotent.

    Feedback on a recommendation made for a signed-in person comes from that person only (404
    for anyone else); one made for nobody (anonymous free text, similar items) takes it from
    whoever holds its id, so anonymous callers are allowed. A dismissal by a signed-in person
    also becomes an activity, so the item stops being recommended to them.
    """

    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        recommendation_id = serializers.UUIDField()
        kind = serializers.ChoiceField(choices=FeedbackKind.choices)
        item_ids = serializers.ListField(
            child=StrictIntegerField(min_value=1, max_value=MAX_ID), min_length=1, max_length=MAX_K
        )

    class OutputSerializer(serializers.Serializer):
        recorded = serializers.IntegerField(help_text="New feedback rows.")
        already_recorded = serializers.IntegerField(help_text="Sent before; nothing changed.")

    @extend_schema(
        tags=["recommendations"],
        request=InputSerializer,
        responses={201: OutputSerializer},
        examples=[
            OpenApiExample(
                "The first page was shown",
                value={
                    "recommendation_id": "6f1c9b8e-3a52-4d0e-9d6c-2f4a7e1b0c11",
                    "kind": "impression",
                    "item_ids": [17, 21],
                },
                request_only=True,
            )
        ],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        summary = feedback_record(
            recommendation_id=data["recommendation_id"],
            item_ids=data["item_ids"],
            kind=data["kind"],
            user=request.user if request.user.is_authenticated else None,
        )
        return Response(self.OutputSerializer(summary).data, status=status.HTTP_201_CREATED)
