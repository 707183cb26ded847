"""Schemathesis against each live service, with a valid token of every role: every
operation, generated valid and invalid input, every check on. No server error, and every
answer — status, content type, headers, body — is one the OpenAPI description documents."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.core.parameters import ParameterLocation

from shared.auth import Role
from tests.e2e.client import Community, token
from tests.e2e.conftest import IDENTITY_SECRET, KEY_FILE, Running

EXAMPLES = 12  # per operation and run; enough to reach each status an operation answers
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
    checks.positive_data_acceptance,
    checks.missing_required_header,
    checks.unsupported_method,
    checks.ignored_auth,
    checks.use_after_free,
    checks.ensure_resource_availability,
]


@pytest.fixture(scope="module")
def tokens(services: Running) -> dict[str, str]:
    """A community with a household and a volunteer, and a token of each role in it."""
    import httpx

    with httpx.Client(timeout=60) as http:
        community = Community(services, http, "conformance")
        community.define()
        home = community.household("g1")
        volunteer = community.volunteer("g1")
        return {
            "resident": community.resident(home["household_id"]),
            "volunteer": community.volunteer_token(volunteer),
            "staff": community.staff,
            "grid_worker": token(Role.grid_worker, "conformance", grid_id="g1"),
            "ops": token(Role.ops),
        }


def described(service: str) -> Any:
    """The service's OpenAPI description, as its code builds it (the live one is the same);
    loaded at import, so each operation is a test of its own."""
    module = importlib.import_module(f"services.{service}.app")
    settings_cls = importlib.import_module(f"services.{service}.settings")
    cls = getattr(settings_cls, f"{service.title()}Settings")
    extra = (
        {"signing_keys": str(KEY_FILE), "identity_secret": IDENTITY_SECRET}
        if service == "identity"
        else {}
    )
    app = module.create_app(
        cls(kafka_bootstrap="unused:9092", mongo_url="mongodb://unused/", **extra)
    )
    return schemathesis.openapi.from_dict(app.openapi())


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run: a failure here is reproducible
)


def conforms(case: Any, base_url: str, tokens: dict[str, str]) -> None:
    # A live stream never ends by itself: read each for a second (its first event, the
    # `: live` comment, comes at once), not for the default 10 s per request.
    bounded = {"timeout": 1.0} if case.path.endswith("/stream") else {}
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
        # The case leaves out or spoils a header on purpose (the bearer token among
        # them): adding a valid token would make the request it means to send valid.
        case.call_and_validate(base_url=base_url, checks=CHECKS, **bounded)
        return
    for tok in tokens.values():
        case.call_and_validate(
            base_url=base_url,
            headers={"Authorization": f"Bearer {tok}"},
            checks=CHECKS,
            **bounded,
        )


@described("orders").parametrize()
@SETTINGS
def test_orders_answers_as_documented(case: Any, services: Running, tokens: dict[str, str]) -> None:
    conforms(case, services.urls["orders"], tokens)


@described("volunteers").parametrize()
@SETTINGS
def test_volunteers_answers_as_documented(
    case: Any, services: Running, tokens: dict[str, str]
) -> None:
    conforms(case, services.urls["volunteers"], tokens)


@described("dispatch").parametrize()
@SETTINGS
def test_dispatch_answers_as_documented(
    case: Any, services: Running, tokens: dict[str, str]
) -> None:
    conforms(case, services.urls["dispatch"], tokens)


@described("notify").parametrize()
@SETTINGS
def test_notify_answers_as_documented(case: Any, services: Running, tokens: dict[str, str]) -> None:
    conforms(case, services.urls["notify"], tokens)


@described("identity").parametrize()
@SETTINGS
def test_identity_answers_as_documented(
    case: Any, services: Running, tokens: dict[str, str]
) -> None:
    conforms(case, services.urls["identity"], tokens)


@described("district").parametrize()
@SETTINGS
def test_district_answers_as_documented(
    case: Any, services: Running, tokens: dict[str, str]
) -> None:
    # Who reads it (and staff, refused): every other role is refused the same way.
    officer = token(Role.sub_district, sub_district="城关街道")
    readers = {"ops": tokens["ops"], "staff": tokens["staff"], "sub_district": officer}
    conforms(case, services.urls["district"], readers)
