"""The webhook gateway against a real local HTTP server."""

from __future__ import annotations

import pytest

from shared.gateway import DeliveryFailed, WebhookGateway
from tests.gateway import running_gateway

MESSAGE = {
    "id": "evt-1:household:h1",
    "recipient": "household:h1",
    "title": "Delivered",
    "body": "At your door.",
}


async def test_a_failing_gateway_is_retried_until_it_accepts() -> None:
    with running_gateway() as server:
        server.script = [503, 502]
        gateway = WebhookGateway(server.url, attempts=4, backoff=0.01)
        try:
            await gateway.send(MESSAGE)
        finally:
            await gateway.close()
        assert len(server.received) == 3
        assert all(body == MESSAGE for _, body in server.received)
        # The same idempotency key each time, so the gateway can drop the repeats.
        assert {headers["Idempotency-Key"] for headers, _ in server.received} == {MESSAGE["id"]}


async def test_a_refusal_is_final_and_exhausted_retries_fail() -> None:
    with running_gateway() as server:
        gateway = WebhookGateway(server.url, attempts=3, backoff=0.01)
        try:
            server.script = [400]
            with pytest.raises(DeliveryFailed, match="HTTP 400"):
                await gateway.send(MESSAGE)
            assert len(server.received) == 1
            server.script = [503, 503, 503]
            with pytest.raises(DeliveryFailed, match="HTTP 503"):
                await gateway.send(MESSAGE)
            assert len(server.received) == 4
        finally:
            await gateway.close()
