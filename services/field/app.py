"""Composition root of the field app: the installable web app cadres and residents use on
their own phones. Like the console it owns no business rule and no database: it serves the
app (a page, a script, a hand-written service worker) and, same-origin, signs people in
through identity and passes their calls on to the services with their token — kept in
httpOnly cookies the page's script never sees."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles

from services.field import routes
from services.field.settings import FieldSettings
from shared.http import service_app
from shared.keys import KeyRing
from shared.runtime import supervise
from shared.signin import IdentityClient

SERVICE = "field"
DESCRIPTION = "The phone app for cadres and residents (offline door-knock records included)."


def create_app(settings: FieldSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys = KeyRing(settings.jwks_url, refresh_every=settings.jwks_refresh_seconds)
        upstream = routes.Upstream(settings.urls())
        app.state.keys = keys
        app.state.identity = IdentityClient(settings.identity_url)
        app.state.upstream = upstream
        app.state.cookie_secure = settings.secure_cookies()
        app.state.readiness = {"keys": keys.check}
        refresh = asyncio.create_task(supervise("keys", keys.keep_fresh))
        try:
            yield
        finally:
            refresh.cancel()
            await asyncio.gather(refresh, return_exceptions=True)
            await upstream.close()
            await app.state.identity.close()

    app = service_app(
        SERVICE,
        lifespan,
        description=DESCRIPTION,
        body_limits={r"^/api/dispatch/v1/photos/": routes.PHOTO_BYTES},
    )
    # Phones on a slow link: the script and the QR decoder's WebAssembly shrink to a third or
    # less. (Starlette leaves the SSE stream uncompressed, so events are not held back.)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.mount("/static", StaticFiles(directory=routes.STATIC), name="static")
    app.include_router(routes.router)
    return app
