"""The site's URLs plus a view that fails, under /api/ and under a page path (for the 500 handler)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from config.urls import handler400, handler403, handler404, handler500
from config.urls import urlpatterns as site_patterns


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug outside any DRF view")


urlpatterns = [path("api/v1/broken-plain-view/", broken), path("broken-page/", broken), *site_patterns]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
