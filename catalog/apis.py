"""Items over the API: public reads of active items, staff writes (one class per operation)."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.item_fields import (
    MAX_CATEGORY_LENGTH,
    MAX_ID_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TITLE_LENGTH,
    parse_item,
)
from catalog.models import Item, Placement
from catalog.selectors import item_list_active
from catalog.services import item_bulk_upsert, item_save, item_set_active
from core.api_fields import PlainDecimalField
from core.apis import ApiPagination, PaginationParametersSerializer, paginated
from core.idempotency import idempotent
from core.models import MAX_ID
from core.records import RowError
from core.text import InvalidTextError

# Rows per bulk request: 1,000 items of about 1 KB fit the default 2.5 MB body limit.
MAX_BULK_ITEMS = 1_000
ROW_FIELDS = ("external_id", "title", "description", "category", "tags", "price", "attributes")


def item_get_or_404(*, item_id: int, include_inactive: bool) -> Item:
    if item_id > MAX_ID:
        raise Http404("No item with this id.")
    items = Item.objects.all() if include_inactive else Item.objects.filter(is_active=True)
    return get_object_or_404(items, id=item_id)


class ItemSummarySerializer(serializers.Serializer):
    """An item as lists and recommendations show it."""

    id = serializers.IntegerField()
    external_id = serializers.CharField()
    title = serializers.CharField()
    category = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    price = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)


class ItemDetailSerializer(ItemSummarySerializer):
    description = serializers.CharField()
    attributes = serializers.DictField()
    is_active = serializers.BooleanField()
    placement = serializers.ChoiceField(choices=Placement.choices)
    embedding_status = serializers.CharField(help_text="pending until the item's text has its vector")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class _ItemFieldsSerializer(serializers.Serializer):
    """The writable fields; the item's record parser (catalog.item_fields.parse_item) checks them again."""

    title = serializers.CharField(max_length=MAX_TITLE_LENGTH)
    description = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    category = serializers.CharField(required=False, allow_blank=True, max_length=MAX_CATEGORY_LENGTH)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=MAX_TAG_LENGTH), required=False, max_length=MAX_TAGS
    )
    price = PlainDecimalField(
        max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True, coerce_to_string=False
    )
    attributes = serializers.DictField(required=False)


def _row_from(record: dict, *, line: int = 0):
    """Clean a record with the bundle rules; a problem names its field (400)."""
    try:
        return parse_item(line, record, False)
    except (RowError, InvalidTextError) as error:
        message = str(error)
        field = message.split(" ", 1)[0]
        raise ValidationError({field if field in ROW_FIELDS else "non_field_errors": [message]}) from None


def _detail(item: Item) -> dict:
    return ItemDetailSerializer(item).data


ITEM_EXAMPLE = {
    "external_id": "sku-1042",
    "title": "Waterproof hiking boots",
    "description": "Leather boots with a grippy sole for wet mountain trails.",
    "category": "Outdoor",
    "tags": ["hiking", "waterproof"],
    "price": "129.00",
    "attributes": {"brand": "Alpina"},
}


class ItemListApi(APIView):
    """List active items (?q= searches title and description, ?category=). Anyone may call it.

    Staff may add ?include_inactive=true; anyone else asking for it gets 403.
    """

    permission_classes = [AllowAny]

    class FilterSerializer(serializers.Serializer):
        q = serializers.CharField(required=False, max_length=200)
        category = serializers.CharField(required=False, max_length=MAX_CATEGORY_LENGTH)
        include_inactive = serializers.BooleanField(required=False, default=False)

    class OutputSerializer(ItemSummarySerializer):
        description = serializers.CharField()

    @extend_schema(
        tags=["items"],
        operation_id="v1_items_list",
        parameters=[FilterSerializer, PaginationParametersSerializer],
        responses={200: paginated(OutputSerializer(many=True), name="PaginatedItemList")},
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        query, category = filters.validated_data.get("q", ""), filters.validated_data.get("category", "")
        if filters.validated_data["include_inactive"]:
            if not request.user.is_staff:
                raise PermissionDenied("include_inactive is for staff only.")
            items = Item.objects.all()
            if query:
                items = items.filter(title__icontains=query) | items.filter(description__icontains=query)
            if category:
                items = items.filter(category=category)
        else:
            items = item_list_active(query=query, category=category)
        paginator = ApiPagination()
        page = paginator.paginate_queryset(items.order_by("title", "id"), request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


class ItemDetailApi(APIView):
    """One item by id. Anyone may read an active item; staff may read inactive ones too (else 404)."""

    permission_classes = [AllowAny]

    @extend_schema(tags=["items"], responses={200: ItemDetailSerializer})
    def get(self, request: Request, item_id: int) -> Response:
        item = item_get_or_404(item_id=item_id, include_inactive=request.user.is_staff)
        return Response(_detail(item))


class ItemCreateApi(APIView):
    """Create one item (staff only). Its vector is computed right after the commit."""

    permission_classes = [IsAdminUser]

    class InputSerializer(_ItemFieldsSerializer):
        external_id = serializers.CharField(max_length=MAX_ID_LENGTH)

    @extend_schema(
        tags=["items"],
        request=InputSerializer,
        responses={201: ItemDetailSerializer},
        examples=[OpenApiExample("An item", value=ITEM_EXAMPLE, request_only=True)],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row = _row_from(dict(serializer.validated_data))
        if Item.objects.filter(external_id=row.external_id).exists():
            raise ValidationError({"external_id": ["an item with this external_id exists; update it instead"]})
        item = Item(**{name: getattr(row, name) for name in ROW_FIELDS})
        try:
            with transaction.atomic():
                item_save(item=item)
        except IntegrityError:  # a concurrent create of the same external_id
            raise ValidationError({"external_id": ["an item with this external_id exists"]}) from None
        return Response(_detail(item), status=status.HTTP_201_CREATED)


class ItemUpdateApi(APIView):
    """Change some fields of one item (staff only). A text change queues its vector again."""

    permission_classes = [IsAdminUser]

    class InputSerializer(_ItemFieldsSerializer):
        title = serializers.CharField(max_length=MAX_TITLE_LENGTH, required=False)
        is_active = serializers.BooleanField(required=False)
        placement = serializers.ChoiceField(choices=Placement.choices, required=False)

    @extend_schema(tags=["items"], request=InputSerializer, responses={200: ItemDetailSerializer})
    def patch(self, request: Request, item_id: int) -> Response:
        item = item_get_or_404(item_id=item_id, include_inactive=True)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = serializer.validated_data
        record = {name: changes.get(name, getattr(item, name)) for name in ROW_FIELDS}
        row = _row_from(record)
        for name in ROW_FIELDS:
            setattr(item, name, getattr(row, name))
        for name in ("is_active", "placement"):
            if name in changes:
                setattr(item, name, changes[name])
        item_save(item=item)
        return Response(_detail(item))


class ItemDeactivateApi(APIView):
    """Take one item out of lists and recommendations (staff only). Items are never deleted:
    recommendation logs and activities refer to them. PATCH is_active=true brings it back."""

    permission_classes = [IsAdminUser]

    @extend_schema(tags=["items"], request=None, responses={200: ItemDetailSerializer})
    @idempotent
    def post(self, request: Request, item_id: int) -> Response:
        item = item_get_or_404(item_id=item_id, include_inactive=True)
        item_set_active(item_ids=[item.id], is_active=False)
        item.refresh_from_db()
        return Response(_detail(item))


class ItemBulkUpsertApi(APIView):
    """Create or update up to 1,000 items by external_id in one transaction (staff only).

    All or nothing: one invalid row answers 400 naming it (`items.3`) and writes nothing.
    Items whose text changed are marked pending and embedded by the next batch.
    """

    permission_classes = [IsAdminUser]

    class InputSerializer(serializers.Serializer):
        items = serializers.ListField(
            child=serializers.DictField(), min_length=1, max_length=MAX_BULK_ITEMS, help_text="Bundle item records."
        )
        reactivate = serializers.BooleanField(default=True, help_text="Reactivate listed items that were inactive.")

    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        updated = serializers.IntegerField()
        skipped = serializers.IntegerField()

    @extend_schema(
        tags=["items"],
        request=InputSerializer,
        responses={200: OutputSerializer},
        examples=[
            OpenApiExample("Two items", value={"items": [ITEM_EXAMPLE, {"external_id": "sku-7", "title": "Tent"}]})
        ],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rows, errors, seen = [], {}, set()
        for index, record in enumerate(serializer.validated_data["items"]):
            try:
                row = parse_item(index, record, False)
            except (RowError, InvalidTextError) as error:
                errors[f"items.{index}"] = [str(error)]
                continue
            if row.external_id in seen:
                errors[f"items.{index}"] = [f"external_id {row.external_id!r} appears twice in this request"]
                continue
            seen.add(row.external_id)
            rows.append(row)
        if errors:
            raise ValidationError(errors)
        # The changed items are pending; embed them now rather than at the next sweep.
        counts = item_bulk_upsert(rows=rows, reactivate=serializer.validated_data["reactivate"], queue_embedding=True)
        return Response({"created": counts.created, "updated": counts.updated, "skipped": counts.skipped})
