"""The REST API: /api/v1/... endpoints, the OpenAPI schema and its documentation pages.

Swagger UI and Redoc load their scripts from drf-spectacular-sidecar (served by this app, no CDN).
Any other path under /api/ is a JSON 404.
"""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from catalog import api_urls as catalog_api_urls
from core.apis import api_not_found
from recommendations import item_api_urls as recommendations_item_api_urls

v1_patterns = [
    # One "items" namespace served by two apps: catalog's item endpoints and the recommender's
    # similar items (/items/<id>/similar/), so catalog never imports the recommender's APIs.
    path("items/", include((catalog_api_urls.urlpatterns + recommendations_item_api_urls.urlpatterns, "items"))),
    path("recommendations/", include("recommendations.api_urls")),
    path("", include("users.api_urls")),
    path("health/", include("core.api_urls")),
]

app_name = "api"

urlpatterns = [
    path("v1/", include((v1_patterns, "v1"))),
    path("schema/", SpectacularAPIView.as_view(api_version="v1"), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    re_path(r"^(?P<unknown_path>.*)$", api_not_found),
]
