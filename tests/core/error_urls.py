"""The site's URLs plus a view that fails, under /api/ and under a page path (for the 500 handler)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import handler400, handler403, handler404, handler500
from config.urls import urlpatterns as site_patterns


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug outside any DRF view")


@csrf_exempt
def reads_a_form(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(len(request.POST)))


urlpatterns = [
    path("api/v1/broken-plain-view/", broken),
    path("broken-page/", broken),
    path("api/v1/plain-form/", reads_a_form),
    path("plain-form/", reads_a_form),
    *site_patterns,
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
