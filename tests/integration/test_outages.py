"""What a service says while a backing server is away, and how outcomes reach a request
waiting on an instance that is not the owner."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from doorstep_cli.localstack import free_port
from services.orders.app import create_app as orders_app
from services.orders.settings import OrdersSettings
from shared.auth import Role, mint
from shared.commands import CommandSender, Outcome, listen_for_outcomes
from shared.kafka import EventPublisher, ensure_topics
from shared.topics import ALL, OUTCOMES
from tests.conftest import Stack

SECRET = "test-secret-test-secret-test-secret"


async def test_a_request_while_the_database_is_away_answers_503_with_retry_after(
    stack: Stack,
) -> None:
    nobody = f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=500"
    app = orders_app(
        OrdersSettings(
            kafka_bootstrap=stack.kafka_bootstrap,
            mongo_url=nobody,
            jwt_secret=SECRET,
            mongo_database="o",
            topic_partitions=4,  # as the session's other tests create them
        )
    )
    staff = mint(SECRET, role=Role.staff, subject="s", community_id="datong")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app, raise_app_exceptions=False), base_url="http://svc"
        ) as client,
    ):
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
