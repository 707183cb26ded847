"""Notify's live feed across instances: what another instance stored reaches this one's
open streams through the tail, against the real database."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pymongo import AsyncMongoClient

from services.notify.live import LiveFeed
from tests.conftest import Stack


async def test_a_notification_another_instance_stored_reaches_an_open_stream(
    stack: Stack, unique: str
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    notifications = client[f"live_{unique}"]["notifications"]
    feed = LiveFeed()
    tail = asyncio.create_task(feed.tail(notifications, interval=0.2))
    try:
        async with feed.subscribe("household:h1") as stream:
            # Stored elsewhere: this instance's owner never saw it.
            doc = {"_id": "e1:household:h1", "recipient": "household:h1"}
            await notifications.insert_one({**doc, "seq": f"{time.time_ns():020d}"})
            other = {"_id": "e1:household:h2", "recipient": "household:h2"}
            await notifications.insert_one({**other, "seq": f"{time.time_ns():020d}"})
            got = await asyncio.wait_for(stream.get(), 20)
            assert got is not None and got["_id"] == "e1:household:h1"
            await asyncio.sleep(1)  # the tail went round again: nothing sent twice
            assert stream.empty()
    finally:
        tail.cancel()
        await asyncio.gather(tail, return_exceptions=True)
        await client.drop_database(f"live_{unique}")
        await client.close()
