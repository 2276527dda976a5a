"""The person's own data: export everything, delete everything (services and API)."""

import pytest
from django.apps import apps
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import connection, models
from django.test import Client
from django.urls import reverse

from recommendations.models import FeedbackKind, Recommendation, UserInterest
from recommendations.serving.service import recommend_for_text, recommend_for_user
from tests.api.conftest import client_for
from tests.factories import ItemFactory, StaffUserFactory, UserFactory
from users.models import Activity, ActivityVector, User
from users.services import activity_record, user_data_export, user_delete

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_TEXT = "zanzibar-marker I need waterproof boots for a glacier walk"
QUERY_TEXT = "quokka-marker which tent survives a storm"


def _person_with_everything(client) -> tuple[User, str]:
    """A person with a row in every table that can hold something of them."""
    items = [ItemFactory.create(title=f"Glacier boot {n}") for n in range(3)]
    person = UserFactory.create(
        username="walrus-marker",
        display_name="walrus-marker",
        email="walrus-marker@example.com",
        external_id="walrus-ext",
    )
    other = UserFactory.create(username="bystander")
    activity_record(user=person, kind="review", item=items[0], text=SECRET_TEXT)
    activity_record(user=person, kind="purchase", item=items[1])
    activity_record(user=other, kind="purchase", item=items[1])
    recommend_for_user(user=person, k=5)
    recommend_for_text(text=QUERY_TEXT, user=person, k=5)
    recommendation = Recommendation.objects.get(user=person, context="user")
    shown = recommendation.items.all()[0]
    # Through the API (client_for makes their API token) with an Idempotency-Key, so a kept answer
    # (with a marker key) is theirs too.
    clicked = client_for(person).post(
        "/api/v1/recommendations/feedback/",
        {"recommendation_id": str(recommendation.id), "kind": FeedbackKind.CLICK, "item_ids": [shown.item_id]},
        format="json",
        headers={"Idempotency-Key": "walrus-marker-click-1"},
    )
    assert clicked.status_code == 201, clicked.content
    LogEntry.objects.log_actions(
        user_id=person.id, queryset=[items[2]], action_flag=ADDITION, change_message="walrus-marker edit"
    )
    _staff_edits(person)
    # A mistyped password: the sign-in lockout keeps a row under the username.
    client.post("/account/login/", {"username": "walrus-marker", "password": "typo"})
    client.force_login(person)
    session_key = client.session.session_key
    return person, session_key


def _staff_edits(person: User) -> None:
    """Staff edited the person's user row and one of their activities in the admin."""
    staff = StaffUserFactory.create(username="admin-on-duty")
    LogEntry.objects.log_actions(
        user_id=staff.id, queryset=[person], action_flag=CHANGE, change_message='[{"changed": {"fields": ["Email"]}}]'
    )
    LogEntry.objects.log_actions(
        user_id=staff.id,
        queryset=Activity.objects.filter(user=person, kind="review"),
        action_flag=CHANGE,
        change_message=f'[{{"added": {{"name": "note", "object": "{SECRET_TEXT}"}}}}]',
    )


def answer_first_item(person: User) -> int:
    return Recommendation.objects.filter(user=person, context="user").get().items.get(position=0).item_id


def _user_foreign_keys():
    for model in apps.get_models(include_auto_created=True):
        for field in model._meta.get_fields():
            if isinstance(field, models.ForeignKey | models.OneToOneField) and field.related_model is User:
                yield model, field


def test_user_data_export_holds_profile_texts_recommendations_and_feedback(client):
    person, _session_key = _person_with_everything(client)

    exported = user_data_export(user=person)

    assert exported["profile"]["username"] == "walrus-marker"
    assert [activity["text"] for activity in exported["activities"]] == [SECRET_TEXT, None]
    assert {row["context"] for row in exported["recommendations"]} == {"user", "text"}
    assert any(row["query_text"] == QUERY_TEXT for row in exported["recommendations"])
    assert exported["feedback"][0]["kind"] == "click"
    assert exported["interests"] and len(exported["interests"][0]["vector"]) == 384
    assert exported["activity_vectors"] == [{"model_name": "all-MiniLM-L6-v2", "count": 1}]
    (kept,) = exported["precomputed_lists"]
    assert kept["items"][0]["item_id"] == answer_first_item(person) and kept["items"][0]["reason"]
    assert len(exported["api_tokens"]) == 1 and "key" not in exported["api_tokens"][0]
    (kept_answer,) = exported["idempotency_keys"]
    assert kept_answer["key"] == "walrus-marker-click-1"
    assert kept_answer["response"] == {"recorded": 1, "already_recorded": 0}
    (failed,) = exported["failed_sign_ins"]
    assert failed["failures"] == 1 and failed["path"] == "/account/login/" and failed["ip_address"] == "127.0.0.1"


def test_user_delete_leaves_nothing_of_the_person_in_any_table(client):
    person, session_key = _person_with_everything(client)
    person_id = person.id
    # The precondition: the person really is in all these tables before the deletion.
    assert Activity.objects.filter(user=person).count() == 2
    assert ActivityVector.objects.filter(activity__user=person).exists()
    assert UserInterest.objects.filter(user=person).exists()
    assert Recommendation.objects.filter(user=person).count() == 2
    assert Session.objects.filter(session_key=session_key).exists()

    user_delete(user=person)

    _assert_nothing_left_of(person_id, session_key)


@pytest.mark.parametrize("how", ["delete page", "delete selected"])
def test_deleting_a_person_in_the_admin_is_the_same_erasure(client, how):
    person, session_key = _person_with_everything(client)
    person_id = person.id
    staff = Client()
    staff.force_login(StaffUserFactory.create(username="admin-eraser", is_superuser=True))

    if how == "delete page":
        response = staff.post(reverse("admin:users_user_delete", args=[person_id]), {"post": "yes"})
    else:
        response = staff.post(
            reverse("admin:users_user_changelist"),
            {"action": "delete_selected", "_selected_action": [person_id], "post": "yes"},
        )

    assert response.status_code == 302, response.content[:500]
    # The admin's own deletion left their sessions, their sign-in lockout row and their name in
    # the admin log (the deletion's own entry too).
    _assert_nothing_left_of(person_id, session_key)


def _assert_nothing_left_of(person_id: int, session_key: str) -> None:
    for model, field in _user_foreign_keys():
        assert not model.objects.filter(**{field.attname: person_id}).exists(), f"{model.__name__}.{field.name}"
    assert not Session.objects.filter(session_key=session_key).exists()
    # Every table, every column, as text: none of the person's words or names remain.
    markers = ["walrus-marker", "walrus-ext", "zanzibar-marker", "quokka-marker", session_key]
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            for marker in markers:
                cursor.execute(f'SELECT count(*) FROM "{table}" AS t WHERE t::text LIKE %s', [f"%{marker}%"])  # noqa: S608 - the database's own table names
                assert cursor.fetchone()[0] == 0, f"{marker!r} left in {table}"
    # Other people's data is untouched.
    assert Activity.objects.filter(user__username="bystander").count() == 1


def test_user_delete_anonymises_what_staff_logged_about_the_person_in_the_admin(db):
    person = UserFactory.create(username="walrus-marker", display_name="walrus-marker")
    activity_record(user=person, kind="review", item=ItemFactory.create(), text=SECRET_TEXT)
    _staff_edits(person)
    item = ItemFactory.create(title="Unrelated item")
    LogEntry.objects.log_actions(
        user_id=User.objects.get(username="admin-on-duty").id, queryset=[item], action_flag=CHANGE
    )
    assert LogEntry.objects.filter(object_repr="walrus-marker").count() == 1

    user_delete(user=person)

    # The unrelated item's entry by its content type too: ids of different tables can be equal.
    about_item = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(item), object_id=str(item.id))
    about_them = LogEntry.objects.exclude(id__in=about_item.values("id")).order_by("id")
    assert [
        (entry.user.username, entry.action_flag, entry.object_repr, entry.change_message) for entry in about_them
    ] == [
        ("admin-on-duty", CHANGE, "(deleted account)", ""),
        ("admin-on-duty", CHANGE, "(deleted account)", ""),
    ]
    assert about_item.get().object_repr == "Unrelated item"  # others untouched


# --- over the API -------------------------------------------------------------------------------


def test_token_for_username_and_password_then_revoked(db):
    UserFactory(username="ada")
    client = client_for(None)

    response = client.post(
        "/api/v1/auth/token/", {"username": "ada", "password": "correct horse battery"}, format="json"
    )
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = client.get("/api/v1/me/")
    revoked = client.delete("/api/v1/auth/token/delete/")

    assert response.status_code == 200
    assert me.json()["username"] == "ada"
    assert revoked.status_code == 204
    assert client.get("/api/v1/me/").status_code == 401


def test_wrong_password_gets_no_token(db):
    UserFactory(username="ada")

    response = client_for(None).post("/api/v1/auth/token/", {"username": "ada", "password": "nope"}, format="json")

    assert response.status_code == 400
    assert "token" not in response.json()


def test_export_over_the_api_is_the_persons_data_only(client):
    person, _session_key = _person_with_everything(client)

    response = client_for(person).get("/api/v1/me/export/")

    body = response.json()
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="my-data.json"'
    assert body["profile"]["username"] == "walrus-marker"
    assert "bystander" not in response.content.decode()


def test_deleting_the_account_over_the_api_with_a_session_leaves_nothing(client):
    person, session_key = _person_with_everything(client)
    person_id = person.id
    csrf_free = client  # Django's test client skips CSRF checks unless asked

    response = csrf_free.delete(
        "/api/v1/me/delete/", data={"password": "correct horse battery"}, content_type="application/json"
    )

    assert response.status_code == 204
    assert not User.objects.filter(id=person_id).exists()
    assert not Session.objects.filter(session_key=session_key).exists()
    for model, field in _user_foreign_keys():
        assert not model.objects.filter(**{field.attname: person_id}).exists(), f"{model.__name__}.{field.name}"
    assert csrf_free.get("/api/v1/me/").status_code in {401, 403}


def test_deleting_the_account_over_the_api_needs_the_persons_password_unless_it_has_none():
    person = UserFactory.create()
    api = client_for(person)

    missing = api.delete("/api/v1/me/delete/", format="json")
    wrong = api.delete("/api/v1/me/delete/", {"password": "a guess"}, format="json")

    assert missing.status_code == 400 and "password" in missing.json()["error"]["fields"]
    assert wrong.status_code == 400 and wrong.json()["error"]["fields"]["password"] == ["that is not your password"]
    assert User.objects.filter(id=person.id).exists()
    # An imported person has no password: their integrator's token is the only key they have.
    imported = UserFactory.create(password=None)
    imported.set_unusable_password()
    imported.save()
    assert client_for(imported).delete("/api/v1/me/delete/").status_code == 204
    assert not User.objects.filter(id=imported.id).exists()


@pytest.mark.parametrize(
    "path", ["/api/v1/me/export/", "/api/v1/me/", "/api/v1/activities/", "/api/v1/recommendations/?k=1"]
)
def test_per_person_api_answers_are_never_stored_by_a_cache(path):
    response = client_for(UserFactory.create()).get(path)

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
