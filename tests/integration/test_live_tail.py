"""Notify's live feed across instances: what another instance stored reaches this one's
open streams through the tail, against the real database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo.asynchronous.collection import AsyncCollection

from services.notify.handlers import NotifyOwner
from services.notify.live import LiveFeed
from shared.runtime import supervise

Tailed = tuple[AsyncCollection[dict[str, Any]], LiveFeed]


@pytest.fixture()
async def tailed(db: Any) -> AsyncIterator[Tailed]:
    """A notifications collection and this instance's feed, tailing it."""
    notifications = db["notifications"]
    feed = LiveFeed()
    tail = asyncio.create_task(feed.tail(notifications, interval=0.2))
    yield notifications, feed
    tail.cancel()
    await asyncio.gather(tail, return_exceptions=True)


async def test_a_notification_another_instance_stored_reaches_an_open_stream(
    tailed: Tailed,
) -> None:
    notifications, feed = tailed
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


async def test_a_notification_stamped_long_before_it_was_stored_still_reaches_an_open_stream(
    tailed: Tailed,
) -> None:
    """Another instance stamped it, then its insert waited (a slow database, a retried
    batch) or its clock is behind: stored a minute "late", it is not lost to the stream."""
    notifications, feed = tailed
    async with feed.subscribe("household:h1") as stream:
        now = time.time_ns()
        fresh = {"_id": "e2:household:h1", "recipient": "household:h1"}
        await notifications.insert_one({**fresh, "seq": f"{now:020d}"})
        got = await asyncio.wait_for(stream.get(), 20)
        assert got is not None and got["_id"] == "e2:household:h1"
        await asyncio.sleep(1)  # the tail has moved past it
        late = {"_id": "e1:household:h1", "recipient": "household:h1"}
        await notifications.insert_one({**late, "seq": f"{now - 60 * 10**9:020d}"})
        got = await asyncio.wait_for(stream.get(), 20)
        assert got is not None and got["_id"] == "e1:household:h1"


async def test_an_instance_stamps_after_what_an_instance_with_a_clock_ahead_stored_meanwhile(
    db: Any,
) -> None:
    """A stream resumed here with the other instance's Last-Event-ID must not find this
    instance's new notifications below it."""
    owner = NotifyOwner(db, None)
    running = asyncio.create_task(supervise("sequence", owner.continue_sequence))
    try:
        await asyncio.sleep(0.5)  # started: nothing stored yet
        ahead = f"{time.time_ns() + 60 * 10**9:020d}"  # the other host's clock, a minute on
        await owner.notifications.insert_one({"_id": "e1:household:h1", "seq": ahead})
        await asyncio.sleep(6)
        assert owner.sequence.next() > ahead
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
