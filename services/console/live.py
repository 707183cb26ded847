"""What tells open consoles to refresh: every service's events, tailed from the end.

One Kafka reader per console instance (no group: each instance sees everything) wakes
the browser streams of the community an event is about. The stream carries only "changed";
the page then fetches its fresh parts, at most once every ``EVERY`` seconds however busy
the community is, so a busy day costs the browser nothing more than a quiet one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer

from shared.topics import DISPATCH_EVENTS, ORDERS_EVENTS, VOLUNTEERS_EVENTS

EVERY = 1.0  # seconds between two "changed" on one stream
KEEPALIVE = 15.0


class Changes:
    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Event]] = {}

    def touch(self, community_id: str) -> None:
        for woken in self._watchers.get(community_id, ()):
            woken.set()

    def watching(self, community_id: str) -> int:
        return len(self._watchers.get(community_id, ()))

    @contextlib.asynccontextmanager
    async def watch(self, community_id: str) -> AsyncIterator[asyncio.Event]:
        woken = asyncio.Event()
        self._watchers.setdefault(community_id, set()).add(woken)
        try:
            yield woken
        finally:
            watchers = self._watchers[community_id]
            watchers.discard(woken)
            if not watchers:
                del self._watchers[community_id]

    async def tail(self, bootstrap: str) -> None:
        consumer = AIOKafkaConsumer(
            ORDERS_EVENTS,
            VOLUNTEERS_EVENTS,
            DISPATCH_EVENTS,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="latest",
        )
        await consumer.start()
        try:
            async for record in consumer:
                if record.key and self._watchers:
                    self.touch(record.key.decode(errors="replace"))
        finally:
            await consumer.stop()
