"""End-user pages about items: home (for you / trending), the catalog list, one item."""

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST

from catalog import selectors
from catalog.models import Item, Placement
from core.exceptions import ApplicationError
from recommendations.forms import AskForm
from recommendations.retrieval.filters import ItemFilters
from recommendations.retrieval.popular import popular_candidates
from recommendations.serving import service as recommender
from users.forms import ItemWordsForm
from users.models import Activity, ActivityKind
from users.services import activity_record

logger = logging.getLogger(__name__)

PAGE_SIZE = 24
FOR_YOU_SIZE = 12
TRENDING_SIZE = 12
SIMILAR_SIZE = 8
ITEM_FOR_YOU_SIZE = 6
REVIEWS_SHOWN = 20
# Pages ask for a fragment (a part of a page) with this header; responses vary on it.
FRAGMENT_HEADER = "X-Fragment"


def _wants_fragment(request: HttpRequest) -> bool:
    return request.headers.get(FRAGMENT_HEADER) == "1"


def _trending_items(k: int) -> list[Item]:
    """Trending items (recency-weighted interactions), or the newest ones before any interaction."""
    ranked = [item_id for item_id, _score in popular_candidates(filters=ItemFilters(), k=k * 2, by="trending")]
    if ranked:
        by_id = Item.objects.exclude(placement=Placement.BANNED).in_bulk(ranked)
        return [by_id[item_id] for item_id in ranked if item_id in by_id][:k]
    return list(
        Item.objects.filter(is_active=True).exclude(placement=Placement.BANNED).order_by("-created_at", "-id")[:k]
    )


def home(request: HttpRequest) -> HttpResponse:
    """Signed in: "for you" with reasons. A visitor: trending items and a free-text question box."""
    context: dict = {"ask_form": AskForm()}
    if request.user.is_authenticated:
        context["answer"] = recommender.recommend_for_user(user=request.user, k=FOR_YOU_SIZE)
    else:
        context["trending"] = _trending_items(TRENDING_SIZE)
    return render(request, "catalog/home.html", context)


def catalog_list(request: HttpRequest) -> HttpResponse:
    """The catalog, searchable by words in title or description. Anyone may open it."""
    query = request.GET.get("q", "").strip()[:200]
    category = request.GET.get("category", "").strip()[:200]
    page = Paginator(selectors.item_list_active(query=query, category=category), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {
        "page": page,
        "query": query,
        "category": category,
        "categories": selectors.item_category_counts(),
        "embedding_progress": selectors.item_embedding_progress(),
    }
    return render(request, "catalog/list.html", context)


def _item_or_404(request: HttpRequest, pk: int) -> Item:
    # Staff may look at an inactive item (to reactivate it); everyone else gets a 404.
    items = Item.objects.all() if request.user.is_staff else Item.objects.filter(is_active=True)
    return get_object_or_404(items, pk=pk)


def _item_context(request: HttpRequest, item: Item, form: ItemWordsForm) -> dict:
    reviews = (
        Activity.objects.filter(item=item, kind__in=[ActivityKind.REVIEW, ActivityKind.COMMENT], text__isnull=False)
        .select_related("user")
        .order_by("-created_at", "-id")[:REVIEWS_SHOWN]
    )
    context = {
        "item": item,
        "similar": recommender.similar_items(item=item, k=SIMILAR_SIZE),
        "reviews": list(reviews),
        "form": form,
        "placements": Placement.choices,
    }
    if request.user.is_authenticated:
        context["answer"] = recommender.recommend_for_user(user=request.user, k=ITEM_FOR_YOU_SIZE)
    return context


def item_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Details, similar items, what people wrote, and a review form for signed-in people."""
    item = _item_or_404(request, pk)
    if request.user.is_authenticated:
        # A view is behaviour the recommender learns from (and "seen" items are not proposed again).
        activity_record(user=request.user, kind=ActivityKind.VIEW, item=item)
    return render(request, "catalog/item.html", _item_context(request, item, ItemWordsForm()))


@login_required
@require_POST
def item_words(request: HttpRequest, pk: int) -> HttpResponse:
    """Record a review or comment. A page script gets the new review as a fragment (201) and then
    refreshes "for you" once the text's vector is made; without scripts, the item page again."""
    item = get_object_or_404(Item, pk=pk, is_active=True)
    form = ItemWordsForm(request.POST)
    fragment = _wants_fragment(request)
    if form.is_valid():
        try:
            activity = activity_record(
                user=request.user,
                kind=form.cleaned_data["kind"],
                item=item,
                text=form.cleaned_data["text"],
                rating=form.cleaned_data["rating"],
            )
        except ApplicationError as error:
            form.add_error("text", error.message)
        else:
            logger.info("recorded %s activity=%s item=%s", activity.kind, activity.pk, item.pk)
            if fragment:
                response = render(request, "catalog/item_review.html", {"review": activity}, status=201)
                response["X-Activity-Id"] = str(activity.pk)
                patch_vary_headers(response, [FRAGMENT_HEADER])
                return response
            messages.success(request, "Thank you: your recommendations now take your words into account.")
            return redirect(reverse("catalog:item", args=[item.pk]) + "#for-you")
    if fragment:
        response = render(request, "catalog/item_words_form.html", {"form": form, "item": item}, status=400)
        patch_vary_headers(response, [FRAGMENT_HEADER])
        return response
    return render(request, "catalog/item.html", _item_context(request, item, form), status=400)
