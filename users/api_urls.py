from django.urls import include, path

from users import apis

app_name = "users"

activity_patterns = [
    path("", apis.ActivityListApi.as_view(), name="activity-list"),
    path("create/", apis.ActivityCreateApi.as_view(), name="activity-create"),
    path("batch/", apis.ActivityBatchCreateApi.as_view(), name="activity-batch"),
    path("<int:activity_id>/delete/", apis.ActivityDeleteApi.as_view(), name="activity-delete"),
    path("<int:activity_id>/helpful/", apis.ActivityHelpfulApi.as_view(), name="activity-helpful"),
]
me_patterns = [
    path("", apis.MeDetailApi.as_view(), name="me"),
    path("export/", apis.MeExportApi.as_view(), name="me-export"),
    path("delete/", apis.MeDeleteApi.as_view(), name="me-delete"),
]
auth_patterns = [
    path("token/", apis.AuthTokenCreateApi.as_view(), name="token-create"),
    path("token/delete/", apis.AuthTokenDeleteApi.as_view(), name="token-delete"),
]

urlpatterns = [
    path("activities/", include(activity_patterns)),
    path("me/", include(me_patterns)),
    path("auth/", include(auth_patterns)),
]
