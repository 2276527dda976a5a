from django.urls import path

from catalog import apis

app_name = "items"

urlpatterns = [
    path("", apis.ItemListApi.as_view(), name="list"),
    path("create/", apis.ItemCreateApi.as_view(), name="create"),
    path("bulk-upsert/", apis.ItemBulkUpsertApi.as_view(), name="bulk-upsert"),
    path("<int:item_id>/", apis.ItemDetailApi.as_view(), name="detail"),
    path("<int:item_id>/update/", apis.ItemUpdateApi.as_view(), name="update"),
    path("<int:item_id>/deactivate/", apis.ItemDeactivateApi.as_view(), name="deactivate"),
]
