"""The recommender's endpoints under /api/v1/items/: similar items.

config/api_urls.py serves these in one "items" namespace with catalog/api_urls.py.
"""

from django.urls import path

from recommendations import apis

urlpatterns = [
    path("<int:item_id>/similar/", apis.ItemSimilarApi.as_view(), name="similar"),
]
