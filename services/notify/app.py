"""Composition root of the notify service: settings, clients, consumers, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.notify import api, handlers
from services.notify.settings import NotifySettings
from shared.http import service_app
from shared.kafka import by_payload_type
from shared.runtime import ServiceRuntime
from shared.topics import DISPATCH_EVENTS, ORDERS_EVENTS, VOLUNTEERS_EVENTS

SERVICE = "notify"
DESCRIPTION = "Notifications for residents, volunteers and staff: inbox, live stream, call list."


def create_app(settings: NotifySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime(settings, SERVICE, settings.mongo_database)
        runtime.consume(
            SERVICE,
            [ORDERS_EVENTS, VOLUNTEERS_EVENTS, DISPATCH_EVENTS],
            by_payload_type(handlers.HANDLERS),
        )
        async with runtime:
            app.state.runtime = runtime
            app.state.readiness = runtime.readiness
            yield

    app = service_app(SERVICE, lifespan, description=DESCRIPTION)
    app.include_router(api.router)
    return app
