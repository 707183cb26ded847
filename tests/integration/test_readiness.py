"""Each service's /readyz follows the broker: 503 while it is down (also at start-up),
200 once it is back, without restarting the service."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, ExitStack

import httpx
from fastapi import FastAPI

from services.dispatch.app import create_app as dispatch_app
from services.dispatch.settings import DispatchSettings
from services.notify.app import create_app as notify_app
from services.notify.settings import NotifySettings
from services.orders.app import create_app as orders_app
from services.orders.settings import OrdersSettings
from services.volunteers.app import create_app as volunteers_app
from services.volunteers.settings import VolunteersSettings
from shared.keys import SigningKey
from tests.conftest import BrokerControl, Stack, jwks_served


async def wait_for_status(
    clients: dict[str, httpx.AsyncClient], status: int, timeout: float
) -> dict[str, dict[str, object]]:
    bodies: dict[str, dict[str, object]] = {}
    async with asyncio.timeout(timeout):
        while True:
            responses = {n: await c.get("/readyz") for n, c in clients.items()}
            bodies = {n: r.json() for n, r in responses.items()}
            if all(r.status_code == status for r in responses.values()):
                return bodies
            await asyncio.sleep(0.3)


async def test_readyz_answers_503_while_the_broker_is_down_and_200_when_it_is_back(
    stack: Stack, own_broker: BrokerControl, unique: str
) -> None:
    stack_keys = ExitStack()
    own_broker.stop()  # down before the services start: they must start anyway
    jwks_url = stack_keys.enter_context(jwks_served(SigningKey.generate()))
    common = {
        "kafka_bootstrap": own_broker.bootstrap,
        "mongo_url": stack.mongo_url,
        "jwks_url": jwks_url,
    }
    apps: dict[str, FastAPI] = {
        "orders": orders_app(OrdersSettings(**common, mongo_database=f"o_{unique}")),
        "volunteers": volunteers_app(VolunteersSettings(**common, mongo_database=f"v_{unique}")),
        "dispatch": dispatch_app(DispatchSettings(**common, mongo_database=f"d_{unique}")),
        "notify": notify_app(NotifySettings(**common, mongo_database=f"n_{unique}")),
    }
    async with AsyncExitStack() as es:
        es.push(stack_keys.__exit__)
        clients = {}
        for name, app in apps.items():
            await es.enter_async_context(app.router.lifespan_context(app))
            clients[name] = await es.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://svc")
            )
        for client in clients.values():
            assert (await client.get("/healthz")).status_code == 200

        down = await wait_for_status(clients, 503, timeout=15)
        for body in down.values():
            checks = body["checks"]
            assert isinstance(checks, dict)
            assert checks["mongo"] == "ok"
            assert str(checks["kafka"]).startswith("unavailable")

        own_broker.start()
        await wait_for_status(clients, 200, timeout=60)

        own_broker.stop()
        down = await wait_for_status(clients, 503, timeout=30)
        assert all(str(b["checks"]["kafka"]).startswith("unavailable") for b in down.values())  # type: ignore[index]

        own_broker.start()
        up = await wait_for_status(clients, 200, timeout=60)
        assert all(b["status"] == "ready" for b in up.values())
        # An outage holds no community "stuck": that is for refusals and bugs, by name.
        assert all(b["stuck_communities"] == {} for b in up.values())
