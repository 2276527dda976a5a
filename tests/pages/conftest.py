import pytest

from tests.pages.shop import build_shop


@pytest.fixture
def shop(db):
    return build_shop()
