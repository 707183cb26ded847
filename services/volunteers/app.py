"""Composition root of the volunteers service: settings, clients, consumers, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.volunteers import api
from services.volunteers.settings import VolunteersSettings
from shared.http import service_app
from shared.runtime import ServiceRuntime

SERVICE = "volunteers"
DESCRIPTION = "Cadre registration (报到), skills, capacity and shifts."


def create_app(settings: VolunteersSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime(settings, SERVICE, settings.mongo_database)
        async with runtime:
            app.state.runtime = runtime
            app.state.readiness = runtime.readiness
            yield

    app = service_app(SERVICE, lifespan, description=DESCRIPTION)
    app.include_router(api.router)
    return app
