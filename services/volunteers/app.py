"""Composition root of the volunteers service: settings, clients, consumers, routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI

from services.volunteers import api
from services.volunteers.handlers import VolunteersOwner
from services.volunteers.settings import VolunteersSettings
from shared.commands import CommandSender, commands_router
from shared.contracts.volunteers import CheckOut
from shared.events import Event
from shared.http import service_app
from shared.kafka import by_payload_type
from shared.runtime import ServiceRuntime
from shared.topics import ORDERS_EVENTS, VOLUNTEERS_COMMANDS

SERVICE = "volunteers"
DESCRIPTION = "Cadre registration (报到), skills, capacity and shifts."


def create_app(settings: VolunteersSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime(settings, SERVICE, settings.mongo_database)
        owner = VolunteersOwner(runtime.db, runtime.publisher)
        runtime.loop("indexes", owner.ensure_indexes)
        runtime.consume(SERVICE, [VOLUNTEERS_COMMANDS, ORDERS_EVENTS], by_payload_type(owner.table))

        async def expire_shifts() -> None:
            # Any instance may notice an expired shift; the owner applies the check-out once
            # (a second request for the same shift finds it already ended).
            await runtime.topics_ready.wait()
            while True:
                now = datetime.now(UTC)
                async for doc in runtime.db["volunteers"].find({"shift.until": {"$lte": now}}):
                    command = CheckOut(
                        command_id=f"expire-{doc['shift']['shift_id']}",
                        actor="system",
                        volunteer_id=doc["_id"],
                        reason="expired",
                        shift_id=doc["shift"]["shift_id"],
                    )
                    await runtime.publisher.publish(
                        VOLUNTEERS_COMMANDS,
                        Event(
                            id=command.command_id,
                            source=f"/{SERVICE}",
                            community_id=doc["community_id"],
                            data=command,
                        ),
                    )
                await asyncio.sleep(settings.shift_check_seconds)

        runtime.loop("expire-shifts", expire_shifts)
        async with runtime:
            app.state.runtime = runtime
            app.state.readiness = runtime.readiness
            app.state.jwt_secret = settings.jwt_secret
            app.state.commands = CommandSender(
                runtime.db, runtime.publisher, VOLUNTEERS_COMMANDS, f"/{SERVICE}"
            )
            yield

    app = service_app(SERVICE, lifespan, description=DESCRIPTION)
    app.include_router(api.router)
    app.include_router(commands_router())
    return app
