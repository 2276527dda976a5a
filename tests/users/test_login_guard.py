"""The sign-in lockout (users/login_guard.py, django-axes): per account and per client address, on
every form that checks a password, through the real middleware, backend and database rows."""

import time
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse

from tests.factories import StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


@pytest.fixture
def limits(settings):
    settings.AXES_FAILURE_LIMIT = settings.LOGIN_FAILURES_PER_ACCOUNT = 3
    settings.LOGIN_FAILURES_PER_ADDRESS = 5
    return settings


def sign_in(client: Client, username: str, password: str, **extra):
    return client.post(reverse("users:login"), {"username": username, "password": password}, **extra)


def test_wrong_passwords_lock_the_account_and_the_right_one_is_then_refused(limits):
    person = UserFactory(username="victim")
    client = Client()

    wrong = [sign_in(client, "victim", f"guess {number}").status_code for number in range(3)]
    right = sign_in(client, "victim", PASSWORD)

    assert wrong == [200, 200, 429]  # the form again (with its error) twice, then the lockout
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session
    assert 0 < int(right["Retry-After"]) <= 15 * 60
    assert "Too many failed sign-ins" in right.content.decode()
    # Locked for every address: the account's limit is the account's.
    elsewhere = sign_in(Client(REMOTE_ADDR="198.51.100.7"), "victim", PASSWORD)
    assert elsewhere.status_code == 429
    assert person.last_login is None


def test_the_address_limit_covers_other_accounts_from_the_same_address(limits):
    for number in range(5):
        UserFactory(username=f"person{number}")
    UserFactory(username="untouched")
    client = Client()

    # One wrong password for each of five accounts: no account reaches its own limit (3) ...
    statuses = [sign_in(client, f"person{number}", "Summer2026!").status_code for number in range(5)]
    # ... but the address has reached its limit (5): another account's right password is refused.
    other = sign_in(client, "untouched", PASSWORD)
    from_elsewhere = sign_in(Client(REMOTE_ADDR="198.51.100.8"), "untouched", PASSWORD)

    assert statuses == [200, 200, 200, 200, 429]
    assert other.status_code == 429
    assert from_elsewhere.status_code == 302  # the account itself is not locked


def test_x_forwarded_for_does_not_give_a_fresh_address_unless_a_proxy_is_configured(limits):
    UserFactory(username="victim")

    spoofed = [
        sign_in(Client(), "person", "guess", HTTP_X_FORWARDED_FOR=f"203.0.113.{number}").status_code
        for number in range(5)
    ]

    assert spoofed[-1] == 429  # the five tries all counted against 127.0.0.1
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}


def test_behind_a_configured_proxy_the_lockout_keys_on_the_address_the_proxy_appended(limits):
    limits.REST_FRAMEWORK = {**limits.REST_FRAMEWORK, "NUM_PROXIES": 1}
    UserFactory(username="victim")
    client = Client()

    sign_in(client, "nobody", "guess", HTTP_X_FORWARDED_FOR="10.0.0.1, 203.0.113.9")

    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["203.0.113.9"]


def test_the_lockout_ends_after_the_cool_off(limits):
    limits.AXES_COOLOFF_TIME = timedelta(seconds=2)
    UserFactory(username="victim")
    client = Client()
    for number in range(3):
        sign_in(client, "victim", f"guess {number}")
    locked = sign_in(client, "victim", PASSWORD)

    time.sleep(2.2)
    after = sign_in(client, "victim", PASSWORD)

    assert locked.status_code == 429 and 1 <= int(locked["Retry-After"]) <= 2
    assert after.status_code == 302 and "_auth_user_id" in client.session


def test_the_admin_sign_in_is_locked_too_and_staff_can_unlock_in_the_admin(limits):
    StaffUserFactory(username="admin2", is_superuser=True)
    UserFactory(username="victim")
    attacker = Client()
    for number in range(3):
        attacker.post(reverse("admin:login"), {"username": "victim", "password": f"guess {number}"})
    locked = attacker.post(reverse("admin:login"), {"username": "victim", "password": PASSWORD})
    staff = Client(REMOTE_ADDR="192.0.2.10")
    assert staff.post(reverse("admin:login"), {"username": "admin2", "password": PASSWORD}).status_code == 302

    attempts = reverse("admin:axes_accessattempt_changelist")
    listed = staff.get(attempts, {"q": "victim"})
    unlocked = staff.post(
        attempts,
        {
            "action": "delete_selected",
            "_selected_action": list(AccessAttempt.objects.filter(username="victim").values_list("pk", flat=True)),
            "post": "yes",
        },
    )
    after = sign_in(Client(), "victim", PASSWORD)

    assert locked.status_code == 429
    assert listed.status_code == 200 and "victim" in listed.content.decode()
    assert unlocked.status_code == 302
    assert after.status_code == 302


def test_the_token_endpoint_is_locked_with_the_api_error_shape(limits):
    UserFactory(username="victim")
    client = Client()
    url = "/api/v1/auth/token/"

    wrong = [
        client.post(url, {"username": "victim", "password": "guess"}, content_type="application/json").status_code
        for _ in range(3)
    ]
    right = client.post(url, {"username": "victim", "password": PASSWORD}, content_type="application/json")

    assert wrong == [400, 400, 429]
    assert right.status_code == 429 and "token" not in right.json()
    error = right.json()["error"]
    assert error["code"] == "locked_out" and "Too many failed sign-ins" in error["message"]
    assert error["retry_after"] == int(right["Retry-After"]) > 0


def test_the_account_deletion_password_counts_toward_the_lockout(limits):
    person = UserFactory(username="victim")
    client = Client()
    client.force_login(person)
    url = reverse("users:delete")

    wrong = [client.post(url, {"password": f"guess {number}"}).status_code for number in range(3)]
    right = client.post(url, {"password": PASSWORD})

    assert wrong == [200, 200, 429]
    assert right.status_code == 429
    person.refresh_from_db()  # still there


def test_the_admins_own_password_change_counts_toward_the_lockout(limits):
    staff = StaffUserFactory(username="admin2")
    client = Client()
    client.force_login(staff)
    url = reverse("admin:password_change")

    def change(old: str):
        return client.post(
            url, {"old_password": old, "new_password1": "a new pass 2026", "new_password2": "a new pass 2026"}
        )

    wrong = [change(f"guess {number}").status_code for number in range(3)]
    right = change(PASSWORD)

    assert wrong == [200, 200, 429]
    assert right.status_code == 429
    staff.refresh_from_db()
    assert staff.check_password(PASSWORD)  # unchanged
