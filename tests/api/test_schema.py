"""The OpenAPI schema: generated, valid, documented, and the API keeps to it under fuzzing."""

import itertools

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import client_for
from users.models import User

pytestmark = pytest.mark.django_db


def test_the_schema_generates_without_warnings_and_validates(tmp_path, capsys):
    call_command("spectacular", "--file", str(tmp_path / "schema.yaml"), "--validate", "--fail-on-warn")

    assert "/api/v1/recommendations/text/" in (tmp_path / "schema.yaml").read_text()


def test_every_operation_says_who_may_call_it_and_documents_the_error_shape(db):
    schema = client_for(None).get("/api/schema/?format=json").json()

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("description"), f"{method.upper()} {path} has no description"
            if not path.startswith("/api/v1/health/"):
                assert "400" in operation["responses"] and "429" in operation["responses"], path
    assert schema["paths"]["/api/v1/recommendations/text/"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]


# POSTs that create nothing a retry could double: the token exchange (anonymous, and it hands
# back the person's one token) and the free-text query (a read sent as POST for its body).
POSTS_WITHOUT_IDEMPOTENCY_KEY = {"/api/v1/auth/token/", "/api/v1/recommendations/text/"}


def test_every_creating_post_documents_the_idempotency_key_and_its_answers(db):
    schema = client_for(None).get("/api/schema/?format=json").json()

    keyed = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            headers = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "header"}
            if "Idempotency-Key" not in headers:
                continue
            keyed.add((method, path))
            assert not headers["Idempotency-Key"].get("required", False)
            assert headers["Idempotency-Key"]["schema"]["pattern"]
            assert {"400", "409", "422"} <= set(operation["responses"]), path
            [success] = [code for code in operation["responses"] if code.startswith("2")]
            assert "Idempotent-Replayed" in operation["responses"][success]["headers"], path
    posts = {(method, path) for path, ops in schema["paths"].items() for method in ops if method == "post"}
    assert keyed == {(method, path) for method, path in posts if path not in POSTS_WITHOUT_IDEMPOTENCY_KEY}
    assert {path for _, path in keyed} >= {
        "/api/v1/activities/create/",
        "/api/v1/activities/batch/",
        "/api/v1/recommendations/feedback/",
        "/api/v1/items/create/",
        "/api/v1/items/bulk-upsert/",
    }


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_documentation_pages_use_no_cdn(db, page):
    response = client_for(None).get(page)

    html = response.content.decode()
    assert response.status_code == 200
    assert "drf_spectacular_sidecar" in html
    assert "cdn." not in html and "unpkg" not in html and "jsdelivr" not in html


@pytest.fixture
def wsgi_keeps_the_test_transaction():
    # Django closes the database connection when a WSGI request finishes; the test client
    # disconnects that handler, and calls through the WSGI app (schemathesis) must too, or the
    # test's transaction (and its data) goes with the first request.
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def api_schema(db, settings, wsgi_keeps_the_test_transaction):
    from config.wsgi import application

    settings.ALLOWED_HOSTS = ["localhost", "testserver"]  # schemathesis calls the app as localhost

    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


def _staff_token() -> str:
    # Re-created for every example: a fuzzed DELETE /me/delete/ or token revocation removes them.
    staff, _ = User.objects.get_or_create(username="fuzz-staff", defaults={"is_staff": True, "is_superuser": True})
    return Token.objects.get_or_create(user=staff)[0].key


# Per operation and mode (schema-valid data, then invalid data): about a minute for all of them here.
EXAMPLES_PER_MODE = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.slow
def test_fuzzed_requests_never_get_a_5xx_or_an_undocumented_answer(api_schema, world, settings_override):
    """Every operation, 15 generated requests with valid and 15 with invalid data, as staff: no 5xx, no answer
    outside the schema. Driven with hypothesis directly: schemathesis' pytest plugin does not run
    under pytest 9 (it reads a private attribute pytest removed)."""
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation, mode in itertools.product(operations, [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_MODE,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call_and_check(case):
            response = case.call(headers={"Authorization": f"Token {_staff_token()}"})
            case.validate_response(response, checks=CHECKS)

        try:
            call_and_check()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE  # nothing to get wrong: no parameters, no body
        except Exception as failure:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label} ({mode.value} data): {failure}")
    assert not failures, "\n\n".join(failures)


@pytest.fixture
def settings_override(settings):
    # The fuzzer sends hundreds of requests a minute; throttling is tested on its own.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(["anon", "user", "text_anon", "text_user", "auth"], "100000/min"),
    }


def _api_views():
    from django.urls import get_resolver

    def walk(patterns):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from walk(pattern.url_patterns)
            elif getattr(pattern.callback, "view_class", None) is not None:
                yield pattern.callback.view_class

    api = next(p for p in get_resolver().url_patterns if str(p.pattern) == "api/")
    return {view for view in walk(api.url_patterns) if view.__module__.split(".")[-1] == "apis"}


def test_every_api_view_states_its_permissions_and_who_may_call_it():
    views = _api_views()

    assert len(views) >= 20
    for view in views:
        assert "permission_classes" in vars(view), f"{view.__name__} relies on the default permissions"
        assert view.__doc__ and len(view.__doc__) > 40, f"{view.__name__} does not say who may call it"
