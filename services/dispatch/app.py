"""Composition root of the dispatch service: settings, clients, consumers, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.dispatch import api, photos
from services.dispatch.handlers import DispatchRules
from services.dispatch.settings import DispatchSettings
from services.dispatch.timer import run_offer_timer
from shared.audit import audit_router
from shared.commands import CommandSender, commands_router
from shared.http import service_app
from shared.runtime import ServiceRuntime
from shared.topics import DISPATCH_COMMANDS, ORDERS_EVENTS, VOLUNTEERS_EVENTS

SERVICE = "dispatch"
DESCRIPTION = (
    "Matches orders to checked-in volunteers grid by grid (派单) and follows each task to the door."
)


def create_app(settings: DispatchSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime(settings, SERVICE, settings.mongo_database)
        rules = DispatchRules(settings.offer_timeout_seconds, settings.escalate_after_seconds)
        owner = runtime.own(rules, [ORDERS_EVENTS, VOLUNTEERS_EVENTS, DISPATCH_COMMANDS])
        runtime.loop("offer-timer", lambda: run_offer_timer(owner, runtime.publisher))
        async with runtime:
            app.state.runtime = runtime
            app.state.readiness = runtime.readiness
            app.state.keys = runtime.keys
            app.state.owner = owner
            app.state.commands = CommandSender(
                runtime.db, runtime.publisher, DISPATCH_COMMANDS, f"/{SERVICE}"
            )
            yield

    app = service_app(
        SERVICE,
        lifespan,
        description=DESCRIPTION,
        body_limits={r"/v1/photos/[^/]+$": photos.MAX_PHOTO_BYTES},
    )
    app.include_router(api.router)
    app.include_router(photos.router)
    app.include_router(commands_router())
    app.include_router(audit_router())
    return app
