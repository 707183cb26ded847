"""What a service says while a backing server is away, and how outcomes reach a request
waiting on an instance that is not the owner."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from doorstep_cli.localstack import free_port
from services.orders.app import create_app as orders_app
from services.orders.settings import OrdersSettings
from shared.auth import Role, mint
from shared.commands import (
    CommandSender,
    Outcome,
    commands_router,
    listen_for_outcomes,
    new_command_id,
)
from shared.contracts import orders as o
from shared.http import service_app
from shared.kafka import EventPublisher, ensure_topics
from shared.keys import KeyRing, SigningKey
from shared.topics import ALL, OUTCOMES
from tests.conftest import Stack, jwks_served

KEY = SigningKey.generate()


async def test_a_request_while_the_database_is_away_answers_503_with_retry_after(
    stack: Stack,
) -> None:
    nobody = f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=500"
    staff = mint(KEY, role=Role.staff, subject="s", community_id="datong")
    with jwks_served(KEY) as jwks_url:
        app = orders_app(
            OrdersSettings(
                kafka_bootstrap=stack.kafka_bootstrap,
                mongo_url=nobody,
                jwks_url=jwks_url,
                mongo_database="o",
                topic_partitions=4,  # as the session's other tests create them
            )
        )
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app, raise_app_exceptions=False),
                base_url="http://svc",
            ) as client,
        ):
            while not app.state.keys.loaded:  # learnt from the issuer's JWKS, as in production
                await asyncio.sleep(0.05)
            response = await client.get(
                "/v1/orders/ord_1", headers={"Authorization": f"Bearer {staff}"}
            )
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "5"
            assert response.headers["content-type"] == "application/problem+json"


async def test_an_outcome_decided_on_another_instance_reaches_the_waiting_request(
    stack: Stack,
) -> None:
    await ensure_topics(stack.kafka_bootstrap, ALL, 4)
    listening = asyncio.create_task(listen_for_outcomes(stack.kafka_bootstrap))
    publisher = EventPublisher(stack.kafka_bootstrap, "tests")
    await publisher.start()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    sender = CommandSender(client["outcomes"], publisher, "orders.commands", "/tests")
    command_id = uuid.uuid4().hex
    waiting = asyncio.create_task(sender.outcome(command_id, wait_seconds=20))
    try:
        await asyncio.sleep(2)  # the listener reads from the end: let it find the end
        outcome = Outcome.ok({"order_id": "ord_1"}, 201)
        reply = {"command_id": command_id, "outcome": outcome.model_dump()}
        await publisher.publish_raw_many(OUTCOMES, [(b"datong", json.dumps(reply).encode())])
        assert await waiting == outcome  # not a 202 after the wait
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await publisher.stop()
        await client.close()


async def test_a_queued_command_is_looked_up_by_its_sender_only(stack: Stack, unique: str) -> None:
    """GET /v1/commands/{id}: 202 while queued, for whoever sent it; 404 for anyone else
    and for an id that never answered 202 (it used to say 'queued' forever)."""
    await ensure_topics(stack.kafka_bootstrap, [f"t.unread.{unique}"], 1)
    publisher = EventPublisher(stack.kafka_bootstrap, "tests")
    await publisher.start()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    db = client[f"queued_{unique}"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.keys = KeyRing.of(KEY)
        app.state.runtime = SimpleNamespace(db=db)
        yield

    app = service_app("tests", lifespan)
    app.include_router(commands_router())
    # Nobody reads this topic: the command stays queued.
    sender = CommandSender(db, publisher, f"t.unread.{unique}", "/tests", wait_seconds=0.5)
    command = o.CancelOrder(
        command_id=new_command_id(), actor="staff-a", order_id="o", role="staff"
    )
    try:
        queued = await sender.send("datong", command)
        assert queued.status == 202
        mine = mint(KEY, role=Role.staff, subject="staff-a", community_id="datong")
        theirs = mint(KEY, role=Role.staff, subject="staff-b", community_id="datong")
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http,
        ):

            async def look(command_id: str, token: str) -> int:
                headers = {"Authorization": f"Bearer {token}"}
                return (await http.get(f"/v1/commands/{command_id}", headers=headers)).status_code

            assert await look(command.command_id, mine) == 202
            assert await look(command.command_id, theirs) == 404
            assert await look(new_command_id(), mine) == 404
    finally:
        await publisher.stop()
        await client.drop_database(f"queued_{unique}")
        await client.close()
