"""The signed-in person over the API: activities, profile, export, deletion, API tokens."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate, logout
from django.db import connection
from django.http import Http404
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.apis import ItemSummarySerializer
from catalog.item_fields import MAX_ID_LENGTH
from catalog.models import Item
from core import database_outage
from core.api_fields import CleanTextField, StrictBooleanField, StrictFloatField, StrictIntegerField
from core.apis import ApiPagination, PaginationParametersSerializer, paginated
from core.idempotency import idempotent
from core.models import MAX_ID, EmbeddingStatus
from core.throttling import AuthTokenThrottle
from users.activity_rules import activity_problems
from users.models import RATING_MAX, RATING_MIN, Activity, ActivityKind, User
from users.quotas import activity_quotas_consume
from users.requests import request_user
from users.services import (
    activity_batch_record,
    activity_delete,
    activity_record,
    helpful_counts,
    helpful_vote_record,
    user_data_export,
    user_delete,
)

MAX_BATCH_ACTIVITIES = 100
# A client clock a little ahead is tolerated; an event further in the future is a mistake.
FUTURE_TOLERANCE = timedelta(minutes=5)


class ActivityInputSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ActivityKind.choices)
    item = StrictIntegerField(min_value=1, max_value=MAX_ID, required=False, help_text="Item id.")
    item_external_id = serializers.CharField(
        max_length=MAX_ID_LENGTH, required=False, help_text="Or the item's external_id."
    )
    text = CleanTextField(required=False, allow_null=True, allow_blank=True)
    rating = StrictFloatField(min_value=RATING_MIN, max_value=RATING_MAX, required=False, allow_null=True)
    created_at = serializers.DateTimeField(required=False, help_text="When it happened; default now.")

    def validate(self, data: dict) -> dict:
        errors = {}
        if "item" in data and "item_external_id" in data:
            errors["item_external_id"] = ["give item or item_external_id, not both"]
        problems = activity_problems(
            kind=data["kind"],
            has_item="item" in data or "item_external_id" in data,
            has_text=bool(data.get("text")),
            rating=data.get("rating"),
        )
        errors.update({field: [message] for field, message in problems.items()})
        created_at = data.get("created_at")
        if created_at is not None and created_at > timezone.now() + FUTURE_TOLERANCE:
            errors["created_at"] = ["is in the future"]
        if errors:
            raise ValidationError(errors)
        return data


class UnknownItemsError(Exception):
    """Records naming items that do not exist: {record index: {field: [message]}}."""

    def __init__(self, errors: dict[int, dict[str, list[str]]]) -> None:
        self.errors = errors


def _resolve_items(records: list[dict], *, include_inactive: bool) -> list[Item | None]:
    """The item of each record, in two queries for a whole batch; unknown ones name their field.

    An inactive (hidden) item is unknown to anyone but staff, with the same message as an id that
    never existed: otherwise trying ids would list hidden items and their fields.
    """
    items_named = Item.objects.all() if include_inactive else Item.objects.filter(is_active=True)
    by_id = items_named.in_bulk({record["item"] for record in records if "item" in record})
    by_external = items_named.in_bulk(
        {record["item_external_id"] for record in records if "item_external_id" in record}, field_name="external_id"
    )
    items: list[Item | None] = []
    errors: dict[int, dict[str, list[str]]] = {}
    for index, record in enumerate(records):
        if "item" in record:
            item = by_id.get(record["item"])
            missing = ("item", f"no item with id {record['item']}")
        elif "item_external_id" in record:
            item = by_external.get(record["item_external_id"])
            missing = ("item_external_id", f"no item with external_id {record['item_external_id']!r}")
        else:
            item, missing = None, None
        if missing and item is None:
            errors[index] = {missing[0]: [missing[1]]}
        items.append(item)
    if errors:
        raise UnknownItemsError(errors)
    return items


class ActivityOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    item = ItemSummarySerializer(allow_null=True)
    text = serializers.CharField(allow_null=True)
    rating = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()
    embedding_status = serializers.CharField(
        help_text="Text activities: pending until encoded, then ok. Others: no_text."
    )


class InterestStateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["included", "queued"])
    detail = serializers.CharField()


def _interest_state(activities: list[Activity]) -> dict:
    """When the person's interest vector will include these activities (read after the commit)."""
    waiting = [activity for activity in activities if activity.embedding_status == EmbeddingStatus.PENDING]
    if settings.CELERY_TASK_ALWAYS_EAGER and not waiting:
        return {"status": "included", "detail": "the interest vector was rebuilt before this answer"}
    return {
        "status": "queued",
        "detail": "a worker encodes the text and rebuilds the interest vector right after this commit, "
        "normally within seconds; if no worker runs, the 60 s sweep picks it up once one does",
    }


def _activities_response(activities: list[Activity]) -> dict:
    try:
        fresh = Activity.objects.select_related("item").in_bulk([activity.id for activity in activities])
    except database_outage.DATABASE_OUTAGES as error:
        if connection.in_atomic_block:
            raise  # the write is not committed yet (an Idempotency-Key's transaction): a 503 undoes it
        # The rows are committed; the database went away after the commit. They are the answer as
        # written (vectors still to come): a 503 now would have a client retry into a second copy.
        database_outage.database_outage_log(error, "the answer to a committed write", answered=201)
        fresh = {}
    activities = [fresh.get(activity.id, activity) for activity in activities]
    return {
        "activities": ActivityOutputSerializer(activities, many=True).data,
        "interest": _interest_state(activities),
    }


class ActivityCreateOutputSerializer(serializers.Serializer):
    activities = ActivityOutputSerializer(many=True)
    interest = InterestStateSerializer()


ACTIVITY_EXAMPLE = {"kind": "review", "item": 17, "text": "Kept me dry on a three-day hike in the rain."}


def _record_all(user: User, records: list[dict], *, batch: bool) -> list[Activity]:
    try:
        items = _resolve_items(records, include_inactive=user.is_staff)
    except UnknownItemsError as missing:
        if len(records) == 1:
            raise ValidationError(missing.errors[0]) from None
        # Error details are keyed by text; the handler writes `activities.<index>.<field>` either way.
        by_index = {str(index): fields for index, fields in missing.errors.items()}
        raise ValidationError({"activities": by_index}) from None
    activity_quotas_consume(user=user, texts=[record.get("text") for record in records])
    arguments = [
        {
            "kind": record["kind"],
            "item": item,
            "text": record.get("text") or None,
            "rating": record.get("rating"),
            "created_at": record.get("created_at"),
        }
        for record, item in zip(records, items, strict=True)
    ]
    if batch:
        return activity_batch_record(user=user, records=arguments)
    return [activity_record(user=user, **arguments[0])]


class ActivityCreateApi(APIView):
    """Record one thing the signed-in person did or wrote (signed-in callers only).

    The row is saved at once; the answer says when their interest vector will include it.
    """

    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["activities"],
        request=ActivityInputSerializer,
        responses={201: ActivityCreateOutputSerializer},
        examples=[OpenApiExample("A review", value=ACTIVITY_EXAMPLE, request_only=True)],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = ActivityInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        activities = _record_all(request_user(request), [serializer.validated_data], batch=False)
        return Response(_activities_response(activities), status=status.HTTP_201_CREATED)


class ActivityBatchCreateApi(APIView):
    """Record up to 100 activities of the signed-in person at once, all or nothing (signed-in only)."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        # What many=True builds, spelled out: the stubs do not know the list's length arguments there.
        activities: serializers.ListSerializer[list[dict]] = serializers.ListSerializer(
            child=ActivityInputSerializer(), min_length=1, max_length=MAX_BATCH_ACTIVITIES
        )

    @extend_schema(
        tags=["activities"],
        request=InputSerializer,
        responses={201: ActivityCreateOutputSerializer},
        examples=[
            OpenApiExample(
                "A search and a purchase",
                value={
                    "activities": [
                        {"kind": "search", "text": "tent for windy campsites"},
                        {"kind": "purchase", "item_external_id": "sku-17"},
                    ]
                },
                request_only=True,
            )
        ],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        activities = _record_all(request_user(request), serializer.validated_data["activities"], batch=True)
        return Response(_activities_response(activities), status=status.HTTP_201_CREATED)


# Per-person answer: no browser or proxy cache keeps it (Cache-Control: no-store, private).
@method_decorator(never_cache, name="dispatch")
class ActivityListApi(APIView):
    """The signed-in person's own activities, newest first, paginated (signed-in callers only)."""

    permission_classes = [IsAuthenticated]

    class FilterSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=ActivityKind.choices, required=False)

    @extend_schema(
        tags=["activities"],
        operation_id="v1_activities_list",
        parameters=[FilterSerializer, PaginationParametersSerializer],
        responses={200: paginated(ActivityOutputSerializer(many=True), name="PaginatedActivityList")},
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        activities = (
            Activity.objects.filter(user=request_user(request)).select_related("item").order_by("-created_at", "-id")
        )
        if "kind" in filters.validated_data:
            activities = activities.filter(kind=filters.validated_data["kind"])
        paginator = ApiPagination()
        page = paginator.paginate_queryset(activities, request, view=self)
        return paginator.get_paginated_response(ActivityOutputSerializer(page, many=True).data)


class ActivityDeleteApi(APIView):
    """Delete one of the signed-in person's own activities (someone else's: 404)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(tags=["activities"], responses={204: None})
    def delete(self, request: Request, activity_id: int) -> Response:
        activity = (
            Activity.objects.filter(user=request_user(request), id=activity_id).first()
            if activity_id <= MAX_ID
            else None
        )
        if activity is None:
            raise Http404("No activity of yours with this id.")
        activity_delete(activity=activity)
        return Response(status=status.HTTP_204_NO_CONTENT)


class HelpfulVoteInputSerializer(serializers.Serializer):
    helpful = StrictBooleanField(help_text="true: the review or comment helped you; false: it did not.")


class HelpfulVoteOutputSerializer(serializers.Serializer):
    activity_id = serializers.IntegerField()
    helpful = serializers.BooleanField(help_text="Your vote.")
    helpful_count = serializers.IntegerField(help_text="People who found it helpful, you included.")
    unhelpful_count = serializers.IntegerField()


class ActivityHelpfulApi(APIView):
    """Say whether someone else's review or comment helped you (signed-in callers; voting again
    replaces your vote). Helpful words weigh more in how the item is described to everyone (its
    community vector); your own words, other kinds of activity or unknown ids: 400 / 404."""

    permission_classes = [IsAuthenticated]

    @extend_schema(tags=["activities"], request=HelpfulVoteInputSerializer, responses=HelpfulVoteOutputSerializer)
    @idempotent
    def post(self, request: Request, activity_id: int) -> Response:
        data = HelpfulVoteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if activity_id > MAX_ID:
            raise Http404("No review or comment with this id.")
        vote = helpful_vote_record(
            user=request_user(request), activity_id=activity_id, helpful=data.validated_data["helpful"]
        )
        helpful, unhelpful = helpful_counts(activity_ids=[activity_id]).get(activity_id, (0, 0))
        return Response(
            HelpfulVoteOutputSerializer(
                {
                    "activity_id": activity_id,
                    "helpful": vote.helpful,
                    "helpful_count": helpful,
                    "unhelpful_count": unhelpful,
                }
            ).data
        )


# Per-person answer: no browser or proxy cache keeps it (Cache-Control: no-store, private).
@method_decorator(never_cache, name="dispatch")
class MeDetailApi(APIView):
    """The signed-in person's profile (signed-in callers only)."""

    permission_classes = [IsAuthenticated]

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        external_id = serializers.CharField(allow_null=True)
        display_name = serializers.CharField()
        email = serializers.CharField()
        is_staff = serializers.BooleanField()
        date_joined = serializers.DateTimeField()

    @extend_schema(tags=["me"], responses={200: OutputSerializer})
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(request.user).data)


# Per-person answer: no browser or proxy cache keeps it (Cache-Control: no-store, private).
@method_decorator(never_cache, name="dispatch")
class MeExportApi(APIView):
    """Everything stored about the signed-in person, as one JSON document (signed-in only)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(tags=["me"], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        response = Response(user_data_export(user=request_user(request)))
        response["Content-Disposition"] = 'attachment; filename="my-data.json"'
        return response


class MeDeleteApi(APIView):
    """Delete the signed-in person's account and everything derived from it (signed-in only).

    Activities, vectors, interest vectors, recommendation logs, feedback, tokens and sessions
    go with it; nothing can be undone. The person confirms with their password in the body, as
    on the account page, so a leaked token or a borrowed session cannot erase the account; wrong
    passwords count toward the sign-in lockout. An account made without a password (imported
    people, whose integrator holds their token) is deleted on the token alone.
    """

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        password = serializers.CharField(
            max_length=128,
            trim_whitespace=False,
            required=False,
            style={"input_type": "password"},
            help_text="Your password; required when the account has one.",
        )

    @extend_schema(tags=["me"], request=InputSerializer, responses={204: None})
    def delete(self, request: Request) -> Response:
        user = request_user(request)
        if user.has_usable_password():
            data = self.InputSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            password = data.validated_data.get("password")
            if password is None:
                raise ValidationError({"password": ["confirm the deletion with your password"]})
            if authenticate(request._request, username=user.get_username(), password=password) != user:
                raise ValidationError({"password": ["that is not your password"]})
        logout(request._request)
        user_delete(user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuthTokenCreateApi(APIView):
    """Exchange a username and password for the person's API token. Anyone may call it.

    Throttled per address, and wrong passwords count toward the sign-in lockout (per account and
    per address: 429 `locked_out`, even for the right password, until `retry_after`). Send the
    token as `Authorization: Token <key>`.
    """

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [AuthTokenThrottle]

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(tags=["auth"], request=InputSerializer, responses={200: OutputSerializer}, auth=[])
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request._request, **serializer.validated_data)
        if user is None:
            raise ValidationError({"non_field_errors": ["unable to sign in with these credentials"]})
        token, _created = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class AuthTokenDeleteApi(APIView):
    """Revoke the signed-in person's API token (signed-in callers only)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(tags=["auth"], responses={204: None})
    def delete(self, request: Request) -> Response:
        Token.objects.filter(user=request_user(request)).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
