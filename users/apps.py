from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class UsersConfig(AppConfig):
    name = "users"
    verbose_name = "Users and activity"


class AdminSiteConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the site of users/admin_site.py as admin.site."""

    default = False  # AdminConfig's own default is True; "users" in INSTALLED_APPS means UsersConfig
    default_site = "users.admin_site.RecommenderAdminSite"
