"""Account pages: sign up, sign in, sign out, my activity, download my data, delete my account."""

import json
import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from core.page_parameters import param_int
from users import services
from users.forms import AccountDeleteForm, SignUpForm
from users.models import Activity
from users.requests import request_user

logger = logging.getLogger(__name__)

ACTIVITY_PAGE_SIZE = 30


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        logger.info("signed up user=%s", user.pk)
        messages.success(request, "Welcome! Tell us what you like: write a review on any item.")
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "users/signup.html", {"form": form})


class LoginView(auth_views.LoginView):
    template_name = "users/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    """POST only (Django's own rule): a link or an image cannot sign anyone out."""


@never_cache
@login_required
def activity_list(request: HttpRequest) -> HttpResponse:
    """What the person did and wrote, newest first."""
    activities = (
        Activity.objects.filter(user=request_user(request))
        .select_related("item")
        .only("id", "kind", "text", "rating", "created_at", "embedding_status", "item__id", "item__title")
        .order_by("-created_at", "-id")
    )
    page = Paginator(activities, ACTIVITY_PAGE_SIZE).get_page(param_int(request, "page") or 1)
    return render(request, "users/activity.html", {"page": page})


@login_required
@require_POST
def activity_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete one entry of the person's own history; their interest vector is rebuilt without it."""
    activity = get_object_or_404(Activity, pk=pk, user=request.user)
    services.activity_delete(activity=activity)
    messages.success(request, "Deleted. Your recommendations no longer count it.")
    return redirect("users:activity")


@login_required
def data_export(request: HttpRequest) -> HttpResponse:
    """Everything stored about the person, as a JSON file download."""
    data = services.user_data_export(user=request_user(request))
    response = HttpResponse(
        json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2),
        content_type="application/json; charset=utf-8",
    )
    filename = f"my-data-{timezone.now():%Y-%m-%d}.json"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def account_delete(request: HttpRequest) -> HttpResponse:
    form = AccountDeleteForm(request.POST or None, request=request, user=request_user(request))
    if request.method == "POST" and form.is_valid():
        user = request_user(request)
        logout(request)
        services.user_delete(user=user)
        messages.success(request, "Your account and everything stored about you have been deleted.")
        return redirect(settings.LOGOUT_REDIRECT_URL)
    return render(request, "users/account_delete.html", {"form": form})
