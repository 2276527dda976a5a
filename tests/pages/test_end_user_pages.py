"""End-user pages through Django's test client: what each page shows, and what it refuses."""

import dataclasses
import json

import pytest
from django.test import Client
from django.urls import reverse

from core.conf import recommender_settings
from core.models import EmbeddingStatus
from recommendations.ml.model_cards import MODEL_CARDS, model_card
from tests.factories import ActivityFactory, ItemFactory, UserFactory
from users.models import Activity, User

pytestmark = pytest.mark.django_db


def test_visitor_home_shows_trending_items_and_the_question_box(client, shop):
    page = client.get(reverse("recommendations:home"))

    assert page.status_code == 200
    html = page.content.decode()
    assert "Trending now" in html and "What are you looking for?" in html
    # boots and tent were bought by the most people lately.
    assert "Alpine hiking boots" in html and "Two-person backpacking tent" in html


def test_signed_in_home_shows_for_you_with_reasons(client, shop):
    client.force_login(shop["people"]["hiker2"])

    page = client.get(reverse("recommendations:home"))

    assert page.status_code == 200
    titles = [result.item.external_id for result in page.context["answer"].results]
    assert titles[0] == "stove"  # what people with the same boots and tent also bought
    assert "because you bought" in page.content.decode()


def test_catalog_list_stays_searchable(client, shop):
    page = client.get(reverse("catalog:list"), {"q": "teapot"})

    assert page.status_code == 200
    assert "Cast iron teapot" in page.content.decode() and "Alpine hiking boots" not in page.content.decode()


def test_question_in_english_or_chinese_is_answered_with_items_and_reasons(client, shop):
    english = client.get(reverse("recommendations:ask"), {"q": "my parcel has not arrived"})
    chinese = client.get(reverse("recommendations:ask"), {"q": "我的包裹还没有到"})

    assert english.status_code == 200
    assert english.context["answer"].results[0].item.external_id == "parcel"
    html = english.content.decode()
    # The reason quotes the item's own words, never the question back.
    assert "matches" not in html and "&quot;my parcel has not arrived&quot;" not in html
    assert english.context["answer"].results[0].reason.startswith(("named ", "says ", "tagged "))
    assert chinese.status_code == 200 and chinese.context["answer"].results


def test_a_question_nothing_is_close_to_says_so_and_shows_popular_items(client, shop, monkeypatch):
    name = recommender_settings().serving_model
    monkeypatch.setitem(MODEL_CARDS, name, dataclasses.replace(model_card(name), match_floor=0.99))

    page = client.post(reverse("recommendations:ask"), {"q": "I want to book a high-speed train ticket"})

    html = page.content.decode()
    assert page.status_code == 200
    assert "We found nothing close to “I want to book a high-speed train ticket” — here is what is popular" in html
    results = page.context["answer"].results
    assert results and all(result.sources == ["popular"] for result in results)
    assert "Suggestions for" not in html and "matches" not in html


@pytest.mark.parametrize(
    "question",
    ["a 保温杯 for green tea", "🍵🫖☕️ tea?", "ᐃᓄᒃᑎᑐᑦ ᐅᖃᐅᓯᖅ", "Ĉu vi havas teujon por verda teo?"],
)
def test_questions_in_mixed_scripts_emoji_or_other_languages_are_answered_honestly(client, shop, question):
    page = client.post(reverse("recommendations:ask"), {"q": question})

    assert page.status_code == 200
    answer = page.context["answer"]
    assert answer.match in ("close", "none") and answer.results
    heading = "We found nothing close to" if answer.match == "none" else "Suggestions for"
    assert heading in page.content.decode()


def test_the_longest_question_the_page_takes_is_answered_and_says_when_it_was_cut(client, shop):
    from recommendations.ml.encoder import get_encoder

    question = ("我的包裹还没有到，物流信息三天没有更新了。" * 30)[:500]  # the form's limit
    cut = get_encoder(recommender_settings().serving_model).encode([question], kind="query").truncated[0]

    page = client.post(reverse("recommendations:ask"), {"q": question})

    assert page.status_code == 200 and page.context["answer"].results
    # MiniLM reads 256 tokens (one per Han character), e5 512: the note appears where it applies.
    assert ("longer than the encoder reads" in page.content.decode()) == cut


def test_question_box_fragment_is_the_answer_only(client, shop):
    fragment = client.get(reverse("recommendations:ask"), {"q": "green tea"}, headers={"X-Fragment": "1"})

    assert fragment.status_code == 200
    assert "<html" not in fragment.content.decode() and "Gooseneck tea kettle" in fragment.content.decode()
    assert "X-Fragment" in fragment["Vary"]


@pytest.mark.parametrize("question", ["   ", "\u3000\t\n"])
def test_an_empty_question_is_refused_with_a_message(client, shop, question):
    page = client.get(reverse("recommendations:ask"), {"q": question})
    posted = client.post(reverse("recommendations:ask"), {"q": question})

    for answer in (page, posted):
        assert answer.status_code == 400
        assert "This field is required." in answer.content.decode()


def test_signed_in_question_posted_by_the_form_is_recorded_as_a_search(
    client, shop, django_capture_on_commit_callbacks
):
    person = UserFactory()
    client.force_login(person)

    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(reverse("recommendations:ask"), {"q": "a tent for two"})

    assert page.status_code == 200 and page.context["answer"].results
    assert Activity.objects.get(user=person).kind == "search"


def test_a_question_link_is_answered_but_records_nothing(client, shop, django_capture_on_commit_callbacks):
    # A link on another site (or an <img src>) to /ask/?q= must not write into a signed-in history.
    person = UserFactory()
    client.force_login(person)

    with django_capture_on_commit_callbacks(execute=True):
        page = client.get(reverse("recommendations:ask"), {"q": "a tent for two"})

    assert page.status_code == 200 and page.context["answer"].results
    assert not Activity.objects.filter(user=person).exists()


def test_the_question_forms_post_with_a_csrf_token(client, shop):
    for name in ("recommendations:home", "recommendations:ask"):
        html = client.get(reverse(name)).content.decode()
        form = html[html.index('<form method="post" action="/ask/"') :]
        assert 'name="csrfmiddlewaretoken"' in form[: form.index("</form>")]


def test_a_cross_site_post_of_a_question_is_refused(shop):
    person = UserFactory()
    client = Client(enforce_csrf_checks=True)
    client.force_login(person)

    page = client.post(reverse("recommendations:ask"), {"q": "a tent for two"})

    assert page.status_code == 403
    assert not Activity.objects.filter(user=person).exists()


def test_a_long_chinese_question_is_answered_by_post(client, shop):
    # 500 characters: over 4 KB once percent-encoded, more than a URL may carry (gunicorn's 414).
    question = ("我的包裹还没有到" * 63)[:500]

    page = client.post(reverse("recommendations:ask"), {"q": question}, headers={"X-Fragment": "1"})

    assert page.status_code == 200 and page.context["answer"].results


def test_questions_share_the_free_text_budget_and_get_a_429_page(client, shop, settings):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "text_anon": "2/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}

    answered = [client.post(reverse("recommendations:ask"), {"q": "green tea"}).status_code for _ in range(2)]
    refused = client.get(reverse("recommendations:ask"), {"q": "green tea"})
    fragment = client.post(reverse("recommendations:ask"), {"q": "green tea"}, headers={"X-Fragment": "1"})
    api = client.post("/api/v1/recommendations/text/", {"text": "green tea"}, content_type="application/json")

    assert answered == [200, 200]
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    assert "Too many questions" in refused.content.decode() and "<html" in refused.content.decode()
    assert fragment.status_code == 429 and "<html" not in fragment.content.decode()
    assert api.status_code == 429  # one budget for the page and the API
    assert client.get(reverse("recommendations:ask")).status_code == 200  # the empty page runs no encoder


def test_item_page_shows_details_similar_items_and_the_review_form(client, shop):
    client.force_login(UserFactory())

    page = client.get(reverse("recommendations:item", args=[shop["items"]["boots"].pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert "Waterproof leather boots" in html
    assert [result.item.external_id for result in page.context["similar"].results][0] == "tent"
    assert 'name="csrfmiddlewaretoken"' in html and 'name="text"' in html


def test_visitor_sees_no_review_form_and_inactive_items_are_not_found(client, shop):
    retired = ItemFactory(is_active=False)

    page = client.get(reverse("recommendations:item", args=[shop["items"]["boots"].pk]))

    assert 'name="text"' not in page.content.decode() and "Sign in" in page.content.decode()
    assert client.get(reverse("recommendations:item", args=[retired.pk])).status_code == 404


def test_posting_a_review_records_it_embeds_it_and_returns_the_fragment(
    client, shop, django_capture_on_commit_callbacks
):
    person = UserFactory()
    client.force_login(person)
    kettle = shop["items"]["kettle"]

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("recommendations:item_words", args=[kettle.pk]),
            {"kind": "review", "text": "Lovely for green tea every morning", "rating": "5"},
            headers={"X-Fragment": "1"},
        )

    assert response.status_code == 201
    review = Activity.objects.get(user=person, kind="review")
    assert response["X-Activity-Id"] == str(review.pk)
    assert review.rating == 5.0 and review.embedding_status == EmbeddingStatus.OK
    assert "Lovely for green tea every morning" in response.content.decode()
    refreshed = client.get(reverse("recommendations:for_you"), {"after": review.pk, "k": 3})
    assert refreshed.status_code == 200
    assert "you wrote: &quot;Lovely for green tea every morning&quot;" in refreshed.content.decode()


def test_for_you_fragment_says_wait_while_the_text_has_no_vector(client, shop):
    person = UserFactory()
    pending = ActivityFactory(user=person, kind="review", text="Warm socks", embedding_status=EmbeddingStatus.PENDING)
    client.force_login(person)

    assert client.get(reverse("recommendations:for_you"), {"after": pending.pk}).status_code == 202
    assert client.get(reverse("recommendations:for_you")).status_code == 200


def test_an_invalid_review_is_refused_with_the_form(client, shop):
    client.force_login(UserFactory())
    url = reverse("recommendations:item_words", args=[shop["items"]["kettle"].pk])

    fragment = client.post(url, {"kind": "review", "text": ""}, headers={"X-Fragment": "1"})
    page = client.post(url, {"kind": "review", "text": ""})

    assert fragment.status_code == 400 and "data-words-form" in fragment.content.decode()
    assert page.status_code == 400 and "This field is required." in page.content.decode()
    assert not Activity.objects.filter(kind="review").exists()


def test_a_review_without_script_redirects_back_to_the_item(client, shop):
    client.force_login(UserFactory())
    kettle = shop["items"]["kettle"]

    response = client.post(reverse("recommendations:item_words", args=[kettle.pk]), {"kind": "comment", "text": "Nice"})

    assert response.status_code == 302 and response["Location"].startswith(
        reverse("recommendations:item", args=[kettle.pk])
    )


def test_user_text_is_escaped_everywhere_it_is_shown(client, shop):
    attack = '<script>alert("xss")</script><img src=x onerror=alert(1)>'
    person = UserFactory(display_name='<b onmouseover="x">Eve</b>')
    ActivityFactory(user=person, item=shop["items"]["kettle"], kind="review", text=attack)
    client.force_login(person)

    pages = [
        client.get(reverse("recommendations:item", args=[shop["items"]["kettle"].pk])),
        client.get(reverse("users:activity")),
        client.get(reverse("recommendations:ask"), {"q": attack}),
        client.get(reverse("recommendations:home")),
    ]

    for page in pages:
        html = page.content.decode()
        assert "<script>alert" not in html and "<img src=x" not in html and '<b onmouseover="x">' not in html
    assert "&lt;script&gt;alert(&quot;xss&quot;)&lt;/script&gt;" in pages[0].content.decode()


def test_forms_refuse_posts_without_the_csrf_token(shop):
    strict = Client(enforce_csrf_checks=True)
    person = UserFactory()
    strict.force_login(person)

    review = strict.post(
        reverse("recommendations:item_words", args=[shop["items"]["kettle"].pk]), {"kind": "review", "text": "x"}
    )
    deletion = strict.post(reverse("users:delete"), {"password": "correct horse battery"})

    assert review.status_code == 403 and deletion.status_code == 403
    assert User.objects.filter(pk=person.pk).exists()


def test_sign_up_signs_the_person_in(client, db):
    response = client.post(
        reverse("users:signup"),
        {
            "username": "newcomer",
            "display_name": "New",
            "password1": "a long pass phrase 42",
            "password2": "a long pass phrase 42",
        },
    )

    assert response.status_code == 302 and response["Location"] == reverse("recommendations:home")
    assert client.get(reverse("recommendations:home")).context["user"].username == "newcomer"


def test_sign_in_and_sign_out(client, db):
    UserFactory(username="returning")

    signed_in = client.post(reverse("users:login"), {"username": "returning", "password": "correct horse battery"})
    refused_get = client.get(reverse("users:logout"))
    signed_out = client.post(reverse("users:logout"))

    assert signed_in.status_code == 302
    assert refused_get.status_code == 405
    assert signed_out.status_code == 302
    assert not client.get(reverse("recommendations:home")).context["user"].is_authenticated


def test_account_pages_need_a_signed_in_person(client, db):
    for name in ("users:activity", "users:data_export", "users:delete"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and response["Location"].startswith(reverse("users:login"))


def test_my_activity_lists_what_i_did(client, shop):
    person = UserFactory()
    ActivityFactory(user=person, item=shop["items"]["tent"], kind="review", text="Stayed dry all night")
    ActivityFactory(item=shop["items"]["tent"], kind="review", text="Someone else's words")
    client.force_login(person)

    html = client.get(reverse("users:activity")).content.decode()

    assert "Stayed dry all night" in html and "Someone else" not in html


@pytest.mark.parametrize("page", ["users:activity", "users:data_export"])
def test_my_activity_and_my_data_are_never_stored_by_a_cache(client, db, page):
    client.force_login(UserFactory())

    response = client.get(reverse(page))

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


def test_download_my_data_is_a_json_attachment(client, shop):
    person = UserFactory()
    ActivityFactory(user=person, item=shop["items"]["tent"], kind="review", text="Stayed dry all night")
    client.force_login(person)

    response = client.get(reverse("users:data_export"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith("attachment;")
    data = json.loads(response.content)
    assert data["profile"]["username"] == person.username
    assert [activity["text"] for activity in data["activities"]] == ["Stayed dry all night"]


def test_delete_my_account_needs_my_password_then_deletes_everything(client, shop):
    person = UserFactory()
    ActivityFactory(user=person, item=shop["items"]["tent"], kind="review", text="Stayed dry all night")
    client.force_login(person)

    wrong = client.post(reverse("users:delete"), {"password": "not it"})
    right = client.post(reverse("users:delete"), {"password": "correct horse battery"})

    assert wrong.status_code == 200 and "That is not your password." in wrong.content.decode()
    assert right.status_code == 302
    assert not User.objects.filter(pk=person.pk).exists()
    assert not Activity.objects.filter(user_id=person.pk).exists()
    assert not client.get(reverse("recommendations:home")).context["user"].is_authenticated


def test_deleting_an_entry_of_my_activity_removes_it_and_refreshes_my_interest(
    client, shop, django_capture_on_commit_callbacks
):
    person = UserFactory()
    mine = ActivityFactory(user=person, item=shop["items"]["tent"], kind="review", text="Stayed dry all night")
    theirs = ActivityFactory(item=shop["items"]["tent"], kind="review", text="Someone else's words")
    client.force_login(person)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("users:activity_delete", args=[mine.pk]))
    refused = client.post(reverse("users:activity_delete", args=[theirs.pk]))

    assert response.status_code == 302 and response["Location"] == reverse("users:activity")
    assert not Activity.objects.filter(pk=mine.pk).exists()
    assert refused.status_code == 404 and Activity.objects.filter(pk=theirs.pk).exists()
    assert client.get(reverse("users:activity_delete", args=[theirs.pk])).status_code == 405


def test_visitor_home_and_my_activity_take_a_fixed_number_of_queries(client, shop, django_assert_num_queries):
    # Trending ids, then their items; no query per item.
    with django_assert_num_queries(2):
        client.get(reverse("recommendations:home"))
    person = UserFactory()
    ActivityFactory.create_batch(5, user=person, item=shop["items"]["tent"], kind="review", text="Dry")
    client.force_login(person)
    # Session, person, count, the page of activities with their items.
    with django_assert_num_queries(4):
        client.get(reverse("users:activity"))
