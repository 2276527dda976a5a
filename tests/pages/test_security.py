"""Safe by default: production cookies and headers, and charts that cannot carry markup."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from recommendations.models import RankerModel
from recommendations.staff import charts
from tests.factories import ActivityFactory, ItemFactory

ROOT = Path(__file__).resolve().parents[2]


def test_production_settings_use_secure_cookies_and_security_headers():
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    env.update(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 50)
    script = (
        "from config import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.SECURE_CONTENT_TYPE_NOSNIFF,"
        " s.X_FRAME_OPTIONS, s.SECURE_REFERRER_POLICY, s.STORAGES['staticfiles']['BACKEND'])"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "True",
        "True",
        "True",
        "True",
        "DENY",
        "same-origin",
        "whitenoise.storage.CompressedManifestStaticFilesStorage",
    ]


@pytest.mark.django_db
def test_pages_carry_security_headers_and_the_static_files_come_from_the_app(client):
    page = client.get(reverse("recommendations:home"))

    assert page["X-Frame-Options"] == "DENY"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert page["Referrer-Policy"] == "same-origin"
    html = page.content.decode()
    assert '<link rel="stylesheet" href="/static/css/site.css">' in html
    assert "https://" not in html  # nothing from a CDN


def test_charts_escape_their_labels():
    svg = charts.line_chart(title="<b>t</b>", x_labels=["<i>v1</i>"], series={"<script>x</script>": [0.5]})
    bars = charts.stacked_bars(title="c", rows=[("<img src=x>", [charts.Segment("<s>", 1, "#000")])])

    assert "<script>" not in svg and "&lt;script&gt;" in svg and "<b>" not in svg and "<i>" not in svg
    assert "<img" not in bars and "&lt;img src=x&gt;" in bars


def test_a_chart_without_data_says_so():
    assert "No data yet." in charts.line_chart(title="t", x_labels=[], series={})


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy_that_allows_no_inline_script(client, staff_user):
    client.force_login(staff_user)

    for url in (reverse("recommendations:home"), reverse("recommendations:staff_dashboard"), reverse("admin:index")):
        policy = client.get(url)["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert "Content-Security-Policy" not in client.get("/api/docs/")


TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_every_post_form_in_the_templates_carries_the_csrf_token():
    forms = []
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        for start in [index for index in range(len(text)) if text.startswith("<form", index)]:
            form = text[start : text.index("</form>", start)]
            if 'method="post"' in form:
                forms.append((template.name, "{% csrf_token %}" in form))

    assert len(forms) >= 8
    assert [name for name, protected in forms if not protected] == []


@pytest.mark.django_db
def test_every_page_action_refuses_a_post_without_the_csrf_token(staff_user):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff_user)
    item = ItemFactory()
    activity = ActivityFactory(user=staff_user, item=item)
    ranker = RankerModel.objects.create(version=1, algorithm="lambdarank", artifact=b"")
    posts = [
        reverse("recommendations:item_words", args=[item.pk]),
        reverse("users:activity_delete", args=[activity.pk]),
        reverse("users:delete"),
        reverse("users:logout"),
        reverse("users:login"),
        reverse("users:signup"),
        reverse("recommendations:staff_item_placement", args=[item.pk]),
        reverse("recommendations:staff_ranker_activate", args=[ranker.pk]),
    ]

    assert [url for url in posts if strict.post(url, {"placement": "banned"}).status_code != 403] == []


def test_production_csrf_cookie_is_http_only_as_the_readme_says():
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    env.update(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 50)
    script = "from config import settings as s; print(s.CSRF_COOKIE_HTTPONLY, s.CSRF_COOKIE_SAMESITE)"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "Lax"]
    assert "Session and CSRF cookies are HttpOnly" in (ROOT / "README.md").read_text().replace("\n", " ")


def test_no_page_script_reads_the_csrf_cookie():
    # The reason the CSRF cookie may be HttpOnly: scripts post the form's own token instead.
    for script in (ROOT / "static").rglob("*.js"):
        assert "cookie" not in script.read_text().lower(), script


@pytest.mark.django_db
def test_a_page_sets_the_csrf_cookie_http_only(client):
    page = client.get(reverse("users:login"))

    assert page.cookies["csrftoken"]["httponly"] is True
