from django.urls import path

from users import views

app_name = "users"
urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("activity/", views.activity_list, name="activity"),
    path("activity/<int:pk>/delete/", views.activity_delete, name="activity_delete"),
    path("data/", views.data_export, name="data_export"),
    path("delete/", views.account_delete, name="delete"),
]
