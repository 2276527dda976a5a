"""One definition of a valid activity (users/activity_rules.py), asked by the API, the service and bundles."""

import pytest

from core.exceptions import ApplicationError
from users.activity_rules import InvalidActivityError, activity_check, activity_kind_check, activity_problems


def test_a_valid_activity_has_no_problems():
    assert activity_problems(kind="rating", has_item=True, has_text=False, rating=4.0) == {}


def test_every_broken_rule_is_named_by_its_field():
    problems = activity_problems(kind="rating", has_item=False, has_text=False, rating=None)

    assert problems == {"item": "kind 'rating' needs an item", "rating": "kind 'rating' needs a rating"}


def test_an_unknown_kind_is_the_only_problem_reported():
    with pytest.raises(InvalidActivityError) as raised:
        activity_kind_check("teleport")

    assert list(raised.value.problems) == ["kind"]
    assert raised.value.message.startswith("unknown kind 'teleport'; expected one of view, click")


def test_the_error_is_an_application_error_whose_message_is_the_first_problem():
    with pytest.raises(ApplicationError) as raised:
        activity_check(kind="search", has_item=False, has_text=False, rating=9.0)

    assert raised.value.message == "kind 'search' needs a text"
    assert raised.value.problems["rating"] == "rating must be between 0.5 and 5.0"


def test_a_bundle_names_the_item_by_its_column():
    problems = activity_problems(kind="view", has_item=False, has_text=False, rating=None, item_field="item_id")

    assert problems == {"item": "kind 'view' needs an item_id"}
