"""Composition root of the volunteers service: settings, clients, consumers, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.volunteers import api
from services.volunteers.handlers import VolunteersRules, shifts_ended
from services.volunteers.settings import VolunteersSettings
from shared.audit import audit_router
from shared.commands import CommandSender, commands_router
from shared.http import service_app
from shared.runtime import ServiceRuntime
from shared.timer import run_timer
from shared.topics import ORDERS_EVENTS, VOLUNTEERS_COMMANDS

SERVICE = "volunteers"
DESCRIPTION = "Cadre registration (报到), skills, capacity and shifts."


def create_app(settings: VolunteersSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime(settings, SERVICE, settings.mongo_database)
        owner = runtime.own(VolunteersRules(), [VOLUNTEERS_COMMANDS, ORDERS_EVENTS])

        async def ensure_indexes() -> None:
            volunteers = runtime.db["volunteers"]
            await volunteers.create_index([("community_id", 1), ("status", 1)])
            await volunteers.create_index([("shift.until", 1)])

        runtime.loop("indexes", ensure_indexes)

        async def expire_shifts() -> None:
            # A shift past its end is checked out by a command on the community's own
            # partition, ordered with the volunteer's own check-out (the second is refused).
            await runtime.topics_ready.wait()
            await run_timer(
                owner,
                runtime.publisher,
                VOLUNTEERS_COMMANDS,
                f"/{SERVICE}",
                shifts_ended,
                tick_seconds=settings.shift_check_seconds,
            )

        runtime.loop("expire-shifts", expire_shifts)
        async with runtime:
            app.state.runtime = runtime
            app.state.readiness = runtime.readiness
            app.state.keys = runtime.keys
            app.state.commands = CommandSender(
                runtime.db, runtime.publisher, VOLUNTEERS_COMMANDS, f"/{SERVICE}"
            )
            yield

    app = service_app(SERVICE, lifespan, description=DESCRIPTION)
    app.include_router(api.router)
    app.include_router(commands_router())
    app.include_router(audit_router())
    return app
