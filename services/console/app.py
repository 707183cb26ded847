"""Composition root of the console: the web page staff and grid workers keep open all day.
It owns no business rule and no database: it reads and asks the other services over HTTP
and hears of changes from their events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from services.console import pages
from services.console.live import Changes
from services.console.session import Sessions
from services.console.settings import ConsoleSettings
from services.console.upstream import Refused, Unavailable, Upstream
from shared.http import service_app
from shared.kafka import KafkaProbe
from shared.keys import KeyRing
from shared.runtime import supervise

SERVICE = "console"
DESCRIPTION = "The operations console: live board, hotline, queues, volunteers, report, audit."


def create_app(settings: ConsoleSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstream = Upstream(settings.urls())
        changes = Changes()
        probe = KafkaProbe(settings.kafka_bootstrap)
        keys = KeyRing(settings.jwks_url, refresh_every=settings.jwks_refresh_seconds)
        sessions = Sessions(settings.identity_url, keys)
        app.state.upstream = upstream
        app.state.changes = changes
        app.state.sessions = sessions
        app.state.cookie_secure = settings.secure_cookies()
        app.state.readiness = {
            "services": upstream.ready,
            "kafka": probe.check,
            "keys": keys.check,
        }
        tasks = [
            asyncio.create_task(
                supervise("live-tail", lambda: changes.tail(settings.kafka_bootstrap))
            ),
            asyncio.create_task(supervise("keys", keys.keep_fresh)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()
            await sessions.close()
            await probe.close()

    app = service_app(SERVICE, lifespan, description=DESCRIPTION)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.include_router(pages.router)

    @app.middleware("http")
    async def renew_cookies(request: Request, call_next: Any) -> Response:
        """Tokens refreshed while answering go back to the browser with the answer."""
        response: Response = await call_next(request)
        renewed = getattr(request.state, "renewed", None)
        if renewed is not None:
            pages.set_tokens(request, response, renewed)
        return response

    @app.exception_handler(pages.SignInNeeded)
    async def to_sign_in(request: Request, exc: Exception) -> Response:
        return RedirectResponse("/signin", status_code=303)

    @app.exception_handler(pages.SubDistrictOnly)
    async def to_sub_district(request: Request, exc: Exception) -> Response:
        return RedirectResponse("/district", status_code=303)

    @app.exception_handler(pages.NotYours)
    async def not_yours(request: Request, exc: Exception) -> HTMLResponse:
        return await error_page(request, "not_yours", 404)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Exception) -> HTMLResponse:
        assert isinstance(exc, Refused)
        status = 404 if exc.status in (403, 404) else exc.status
        return await error_page(request, exc.said(pages.language(request)), status)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Exception) -> HTMLResponse:
        response = await error_page(request, "unavailable", 503)
        response.headers["Retry-After"] = "5"
        return response

    return app


async def error_page(request: Request, said: str, status: int) -> HTMLResponse:
    try:
        who = await pages.signed_in_person(request)
    except (pages.SignInNeeded, Unavailable):
        who = None
    response = pages.page(request, "error.html", who, problem=said)
    response.status_code = status
    return response
