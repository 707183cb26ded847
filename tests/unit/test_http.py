"""The HTTP edge every service shares (shared.http, shared.edge), on an app of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pymongo.errors import ServerSelectionTimeoutError

from shared.auth import CurrentPrincipal, Role, mint
from shared.http import CORRELATION_HEADER, service_app
from shared.keys import KeyRing, SigningKey

KEY = SigningKey.generate()


def app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.keys = KeyRing.of(KEY)
        yield

    application = service_app("test", lifespan, body_limits={r"/big$": 1000})

    @application.get("/v1/boom")
    async def boom(principal: CurrentPrincipal) -> None:
        raise RuntimeError("a bug")

    @application.get("/v1/away")
    async def away(principal: CurrentPrincipal) -> None:
        raise ServerSelectionTimeoutError("127.0.0.1:27017: timed out")

    @application.post("/v1/echo")
    async def echo(body: dict[str, str], principal: CurrentPrincipal) -> dict[str, str]:
        return body

    @application.post("/v1/big")
    async def big(body: dict[str, str], principal: CurrentPrincipal) -> dict[str, int]:
        return {"size": len(body)}

    return application


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(KEY, role=Role.ops, subject='ops-1')}"}


def test_a_500_carries_the_correlation_id_its_log_line_has() -> None:
    with TestClient(app(), raise_server_exceptions=False) as client:
        response = client.get("/v1/boom", headers={**bearer(), CORRELATION_HEADER: "req-42"})
    assert response.status_code == 500
    assert response.headers[CORRELATION_HEADER] == "req-42"
    assert response.headers["content-type"] == "application/problem+json"


def test_a_database_away_is_a_503_to_retry_handled_not_raised_on_as_a_crash() -> None:
    # The test client raises whatever escapes the app, as the server logs it with a
    # traceback: an outage is an answer, not an unhandled error.
    with TestClient(app()) as client:
        response = client.get("/v1/away", headers=bearer())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.headers["content-type"] == "application/problem+json"


def test_a_long_or_strange_correlation_id_is_replaced_not_echoed() -> None:
    with TestClient(app()) as client:
        for given in ("x" * 60_000, "ünïcode".encode(), "a b", "x\ty"):
            response = client.get("/healthz", headers={CORRELATION_HEADER: given})
            kept = response.headers[CORRELATION_HEADER]
            assert kept not in (given, "ünïcode") and len(kept) == 32


def test_no_credentials_is_401_with_a_challenge_and_a_valid_token_gets_through() -> None:
    with TestClient(app()) as client:
        refused = client.post("/v1/echo", json={"a": "b"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert client.post("/v1/echo", json={"a": "b"}, headers=bearer()).json() == {"a": "b"}


def test_each_route_has_its_body_limit() -> None:
    body = {"a": "x" * 2000}
    with TestClient(app()) as client:
        assert client.post("/v1/echo", json=body, headers=bearer()).status_code == 200
        refused = client.post("/v1/big", json=body, headers=bearer())
        assert refused.status_code == 413
        assert refused.headers["content-type"] == "application/problem+json"
        over_default = {"a": "x" * 70_000}
        assert client.post("/v1/echo", json=over_default, headers=bearer()).status_code == 413


def test_readiness_does_not_tell_strangers_why() -> None:
    application = app()

    async def broken() -> None:
        raise ConnectionError("mongodb://10.0.0.5:27017 refused")

    with TestClient(application) as client:
        application.state.readiness = {"database": broken}
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "10.0.0.5" not in response.text
    assert response.json()["checks"] == {"database": "unavailable"}
