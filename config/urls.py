from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("config.api_urls")),
    path("", include("catalog.urls")),
    path("account/", include("users.urls")),
    path("", include("recommendations.urls")),
]

# The API's JSON error shape under /api/, Django's HTML error pages elsewhere (core/error_views.py);
# a database outage is a 503 with Retry-After either way.
handler400 = "core.error_views.bad_request"
handler403 = "core.error_views.permission_denied"
handler404 = "core.error_views.page_not_found"
handler500 = "core.error_views.server_error"
