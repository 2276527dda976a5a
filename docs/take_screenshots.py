"""Screenshots of the home and item pages for the README, from the demo catalog.

    make demo                                   # or: manage.py migrate && load_demo && rebuild_behaviour
    DJANGO_DEBUG=true .venv/bin/python manage.py runserver 127.0.0.1:8000 &
    DJANGO_DEBUG=true .venv/bin/python docs/take_screenshots.py http://127.0.0.1:8000 demo-user-id

Signs in as the given demo person (a session made here, the demo people have no password) and
saves docs/home.png and docs/item.png with Debian's Chromium.
"""

import os
import sys
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main(base_url: str, username: str) -> None:
    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from playwright.sync_api import sync_playwright

    from recommendations.serving.service import recommend_for_user
    from users.models import User

    person = User.objects.get(username=username)
    session = SessionStore()
    session[SESSION_KEY] = str(person.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = person.get_session_auth_hash()
    session.create()
    first = recommend_for_user(user=person, k=1, log=False).results[0].item

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        context = browser.new_context(base_url=base_url, viewport={"width": 1200, "height": 900})
        host = base_url.split("//", 1)[1].split(":")[0]
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session.session_key or "", "domain": host, "path": "/"}]
        )
        page = context.new_page()
        page.goto("/")
        page.screenshot(path=str(ROOT / "docs" / "home.png"))
        page.goto(f"/items/{first.pk}/")
        page.screenshot(path=str(ROOT / "docs" / "item.png"))
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
