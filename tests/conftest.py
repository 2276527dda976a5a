import pytest
from django.core.cache import cache

from tests.factories import StaffUserFactory, UserFactory


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    # Throttle counters live in the default cache (local memory in tests): each test starts at zero.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def staff_user(db):
    return StaffUserFactory()
