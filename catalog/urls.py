from django.urls import path

from catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.home, name="home"),
    path("catalog/", views.catalog_list, name="list"),
    path("items/<int:pk>/", views.item_detail, name="item"),
    path("items/<int:pk>/words/", views.item_words, name="item_words"),
]
