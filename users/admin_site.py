"""The admin site: Django's, except that the staff's own password change checks the old password
through authenticate(), so guesses there count toward the sign-in lockout (users/login_guard.py)
like every other password check. Installed as the default site by users.apps.AdminSiteConfig."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminPasswordChangeForm
from django.contrib.auth import authenticate
from django.contrib.auth.views import PasswordChangeView
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponseBase
from django.urls import reverse


class LockoutCheckedPasswordChangeForm(AdminPasswordChangeForm):
    def __init__(self, user, *args, request: HttpRequest, **kwargs) -> None:
        super().__init__(user, *args, **kwargs)
        self.request = request

    def clean_old_password(self) -> str:
        old_password = self.cleaned_data["old_password"]
        if authenticate(self.request, username=self.user.get_username(), password=old_password) != self.user:
            raise ValidationError(self.error_messages["password_incorrect"], code="password_incorrect")
        return old_password


class LockoutCheckedPasswordChangeView(PasswordChangeView):
    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "request": self.request}


class RecommenderAdminSite(admin.AdminSite):
    def password_change(  # type: ignore[override]  # the stubs say TemplateResponse; Django's redirects after a change too
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponseBase:
        # Django's AdminSite.password_change with the lockout-checked form and view.
        defaults: dict[str, Any] = {
            "form_class": LockoutCheckedPasswordChangeForm,
            "success_url": reverse("admin:password_change_done", current_app=self.name),
            "extra_context": {**self.each_context(request), **(extra_context or {})},
        }
        if self.password_change_template is not None:
            defaults["template_name"] = self.password_change_template
        request.current_app = self.name
        return LockoutCheckedPasswordChangeView.as_view(**defaults)(request)
