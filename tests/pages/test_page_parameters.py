"""Page parameters from the address: malformed or out of range is the site's own 400 page, never a 500."""

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import ItemFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser() -> Client:
    # A real browser sees the response, not the exception: nothing is re-raised into the test.
    return Client(raise_request_exception=False)


def _assert_400_page(response, parameter: str) -> None:
    html = response.content.decode()
    assert response.status_code == 400, html[:500]
    assert response.templates[0].name == "400.html"
    assert "<nav" in html  # the site's own page, with its navigation
    assert parameter in html


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("q=%00", "q"), ("category=%00", "category"), ("q=a%00b", "q"), ("page=%C2%B2", "page"), ("page=0", "page")],
)
def test_catalog_list_answers_a_malformed_parameter_with_the_400_page(browser, query, parameter):
    _assert_400_page(browser.get(f"{reverse('catalog:list')}?{query}"), parameter)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("k=%C2%B2", "k"),
        ("k=%EF%BC%91%EF%BC%92", "k"),  # full-width "12"
        ("k=0", "k"),
        ("k=25", "k"),
        ("k=-1", "k"),
        ("after=%C2%B2", "after"),
        ("after=%00", "after"),
        ("after=99999999999999999999", "after"),
    ],
)
def test_for_you_answers_a_malformed_parameter_with_the_400_page(browser, user, query, parameter):
    browser.force_login(user)

    _assert_400_page(browser.get(f"{reverse('recommendations:for_you')}?{query}"), parameter)


@pytest.mark.parametrize("query", ["user=a%00", "user=%00"])
def test_staff_preview_answers_a_nul_in_the_person_with_the_400_page(browser, staff_user, query):
    browser.force_login(staff_user)

    _assert_400_page(browser.get(f"{reverse('recommendations:staff_preview')}?{query}"), "user")


@pytest.mark.parametrize("wanted", ["²", "99999999999999999999", "１２"])
def test_staff_preview_looks_up_digits_that_are_not_an_id_as_a_name(browser, staff_user, wanted):
    browser.force_login(staff_user)

    response = browser.get(reverse("recommendations:staff_preview"), {"user": wanted})

    assert response.status_code == 200
    assert response.context["not_found"] is True


def test_staff_preview_still_finds_a_person_by_id(browser, staff_user):
    person = UserFactory(username="someone")
    browser.force_login(staff_user)

    response = browser.get(reverse("recommendations:staff_preview"), {"user": str(person.pk)})

    assert response.status_code == 200 and response.context["person"] == person


@pytest.mark.parametrize("query", ["page=%C2%B2", "page=%00", "page=-2"])
def test_my_activity_answers_a_malformed_page_with_the_400_page(browser, user, query):
    browser.force_login(user)

    _assert_400_page(browser.get(f"{reverse('users:activity')}?{query}"), "page")


def test_the_400_page_is_the_sites_own_even_with_debug_on(browser, settings):
    settings.DEBUG = True

    response = browser.get(f"{reverse('catalog:list')}?q=%00")

    html = response.content.decode()
    assert response.status_code == 400
    assert "Traceback" not in html and "CELERY" not in html and "BROKER" not in html
    assert "q contains a NUL character" in html


def test_well_formed_parameters_still_work(browser, user):
    ItemFactory(title="Blue kettle", category="Kitchen")
    browser.force_login(user)

    search = browser.get(reverse("catalog:list"), {"q": " kettle ", "category": "Kitchen", "page": "1"})
    assert search.status_code == 200 and "Blue kettle" in search.content.decode()
    assert browser.get(reverse("catalog:list"), {"page": "99"}).status_code == 200  # past the end: the last page
    assert browser.get(reverse("recommendations:for_you"), {"k": "24", "after": "12345"}).status_code == 200
    assert browser.get(reverse("users:activity"), {"page": "1"}).status_code == 200
