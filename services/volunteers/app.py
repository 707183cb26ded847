"""Composition root of the volunteers service: settings, clients, consumers, routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI

from services.volunteers import api, domain
from services.volunteers.handlers import VolunteersRules
from services.volunteers.settings import VolunteersSettings
from shared.audit import audit_router
from shared.commands import CommandSender, commands_router
from shared.contracts.volunteers import CheckOut
from shared.events import Event
from shared.http import service_app
from shared.runtime import ServiceRuntime
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
            # The owner notices its communities' expired shifts in memory and sends their
            # check-out as a command on the community's own partition, so it is ordered with
            # the volunteer's own check-out (whichever comes second is refused). A shift is
            # marked sent only once the send succeeded.
            sent: set[str] = set()
            await runtime.topics_ready.wait()
            while True:
                moment = datetime.now(UTC)
                due = [
                    (community_id, doc)
                    for community_id, loaded in list(owner.loaded.items())
                    for doc in domain.expired_shifts(loaded.state.values("volunteers"), moment)
                    if doc["shift"]["shift_id"] not in sent
                ]
                for community_id, doc in due:
                    shift_id = doc["shift"]["shift_id"]
                    command = CheckOut(
                        command_id=f"expire-{shift_id}",
                        actor="system",
                        volunteer_id=doc["_id"],
                        reason="expired",
                        shift_id=shift_id,
                    )
                    await runtime.publisher.publish(
                        VOLUNTEERS_COMMANDS,
                        Event(
                            id=command.command_id,
                            source=f"/{SERVICE}",
                            community_id=community_id,
                            data=command,
                        ),
                    )
                    sent.add(shift_id)
                await asyncio.sleep(settings.shift_check_seconds)

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
