from django.urls import path

from recommendations import views

app_name = "recommendations"
urlpatterns = [
    path("", views.home, name="home"),
    path("items/<int:pk>/", views.item_detail, name="item"),
    path("items/<int:pk>/words/", views.item_words, name="item_words"),
    path("items/<int:pk>/reviews/<int:activity_id>/helpful/", views.review_helpful, name="review_helpful"),
    path("ask/", views.ask, name="ask"),
    path("for-you/", views.for_you, name="for_you"),
    path("staff/", views.staff_dashboard, name="staff_dashboard"),
    path("staff/preview/", views.staff_preview, name="staff_preview"),
    path("staff/items/<int:pk>/placement/", views.staff_item_placement, name="staff_item_placement"),
    path("staff/rankers/", views.staff_rankers, name="staff_rankers"),
    path("staff/rankers/<int:pk>/activate/", views.staff_ranker_activate, name="staff_ranker_activate"),
    path("staff/rankers/replay/", views.staff_replay_check, name="staff_replay_check"),
    path("staff/experiments/", views.staff_experiments, name="staff_experiments"),
    path("staff/experiments/<int:pk>/", views.staff_experiment, name="staff_experiment"),
    path("staff/experiments/<int:pk>/refresh/", views.staff_experiment_refresh, name="staff_experiment_refresh"),
    path("staff/experiments/<int:pk>/stop/", views.staff_experiment_stop, name="staff_experiment_stop"),
    path("staff/experiments/<int:pk>/promote/", views.staff_experiment_promote, name="staff_experiment_promote"),
]
