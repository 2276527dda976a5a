from django.urls import path

from core import apis

app_name = "health"

urlpatterns = [
    path("live/", apis.HealthLiveApi.as_view(), name="live"),
    path("ready/", apis.HealthReadyApi.as_view(), name="ready"),
]
