from django.urls import path

from recommendations import apis

app_name = "recommendations"

urlpatterns = [
    path("", apis.RecommendationForUserApi.as_view(), name="for-user"),
    path("text/", apis.RecommendationForTextApi.as_view(), name="for-text"),
    path("feedback/", apis.FeedbackCreateApi.as_view(), name="feedback"),
]
