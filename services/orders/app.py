"""Composition root of the orders service: settings, clients, consumers, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.orders import api, campaign_api, cards, supply_api
from services.orders.handlers import OrdersRules
from services.orders.settings import OrdersSettings
from shared.audit import audit_router
from shared.commands import CommandSender, commands_router
from shared.http import service_app
from shared.runtime import ServiceRuntime
from shared.topics import DISPATCH_EVENTS, ORDERS_COMMANDS, VOLUNTEERS_EVENTS

SERVICE = "orders"
DESCRIPTION = "Communities, grids, households and orders (下单, 接单) and their lifecycle."


def create_app(settings: OrdersSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime(settings, SERVICE, settings.mongo_database)
        cards.use_font(settings.card_font)
        # Volunteers' events say who is on duty: walk lists go to cadres on duty.
        owner = runtime.own(OrdersRules(), [ORDERS_COMMANDS, DISPATCH_EVENTS, VOLUNTEERS_EVENTS])

        async def ensure_indexes() -> None:
            # For the read side (HTTP lookups). Not unique: uniqueness is the rules' to keep,
            # and a read-model write must never be refused.
            households, orders = runtime.db["households"], runtime.db["orders"]
            await households.create_index([("community_id", 1), ("card_code", 1)])
            await households.create_index([("community_id", 1), ("phone", 1)])
            await orders.create_index([("community_id", 1), ("status", 1)])
            await orders.create_index([("household_id", 1), ("placed_at", -1)])
            await runtime.db["visits"].create_index([("campaign_id", 1)])

        runtime.loop("indexes", ensure_indexes)
        async with runtime:
            app.state.runtime = runtime
            app.state.readiness = runtime.readiness
            app.state.keys = runtime.keys
            app.state.owner = owner
            app.state.card_url = settings.card_url
            app.state.commands = CommandSender(
                runtime.db, runtime.publisher, ORDERS_COMMANDS, f"/{SERVICE}"
            )
            yield

    app = service_app(
        SERVICE,
        lifespan,
        description=DESCRIPTION,
        body_limits={r"/households/import$": api.MAX_CSV_BYTES},
    )
    app.include_router(api.router)
    app.include_router(campaign_api.router)
    app.include_router(supply_api.router)
    app.include_router(commands_router())
    app.include_router(audit_router())
    return app
