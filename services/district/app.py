"""Composition root of the sub-district view: settings, clients, the owner, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.district import api
from services.district.handlers import CADRES, COMMUNITIES, DistrictRules
from services.district.settings import DistrictSettings
from shared.http import service_app
from shared.runtime import ServiceRuntime
from shared.topics import DISPATCH_EVENTS, ORDERS_EVENTS, VOLUNTEERS_EVENTS

SERVICE = "district"
DESCRIPTION = (
    "A sub-district's (街道) view of its communities, built from their events: open, late and "
    "escalated orders, doors not yet reached, cadres on duty; cadres mobilised by work unit."
)


def create_app(settings: DistrictSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime(settings, SERVICE, settings.mongo_database)
        runtime.own(
            DistrictRules(),
            [ORDERS_EVENTS, DISPATCH_EVENTS, VOLUNTEERS_EVENTS],
            pace_seconds=settings.pace_seconds,
        )

        async def ensure_indexes() -> None:
            await runtime.db[COMMUNITIES].create_index([("sub_district", 1)])
            await runtime.db[CADRES].create_index([("community_id", 1)])

        runtime.loop("indexes", ensure_indexes)
        async with runtime:
            app.state.runtime = runtime
            app.state.readiness = runtime.readiness
            app.state.keys = runtime.keys
            yield

    app = service_app(SERVICE, lifespan, description=DESCRIPTION)
    app.include_router(api.router)
    return app
