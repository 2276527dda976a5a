"""End-user pages of the catalog: the list of items, searchable by words.

The home and item pages show recommendations, so they live with the recommender's views
(recommendations/views.py).
"""

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from catalog import selectors
from core.page_parameters import param_int, param_text

PAGE_SIZE = 24


def catalog_list(request: HttpRequest) -> HttpResponse:
    """The catalog, searchable by words in title or description. Anyone may open it."""
    query = param_text(request, "q")
    category = param_text(request, "category")
    page = Paginator(selectors.item_list_active(query=query, category=category), PAGE_SIZE).get_page(
        param_int(request, "page") or 1  # past the last page: the last page
    )
    context = {
        "page": page,
        "query": query,
        "category": category,
        "categories": selectors.item_category_counts(),
        "embedding_progress": selectors.item_embedding_progress(),
    }
    return render(request, "catalog/list.html", context)
