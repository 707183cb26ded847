"""The live stream's feed: each stored notification is pushed to the connected streams of
its recipient, in-process, the moment it is stored — no database poll per connection, and
an idle stream costs nothing but its queue.

Notifications stored by another notify instance (each owns some partitions) reach this
instance's streams through one tail of the collection per instance, run only while a
stream is connected: one query per interval, however many streams there are. A copy seen
both ways is sent once (by id).

The tail follows ``seq``, stamped just before the insert by the instance that stored it; a
notification whose insert waited (a slow database) or whose instance's clock is behind
lands *behind* the tail's cursor. So the tail keeps looking a few seconds behind, and
every ``SWEEP_EVERY`` rounds sweeps the last ``SWEEP_NS`` for the recipients whose streams
are open here (the sweep costs a minute of those recipients' notifications, not of all).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from shared.log import get_logger

log = get_logger(__name__)

Doc = dict[str, Any]
REMEMBERED = 100_000  # ids already fanned out, to send a notification seen twice only once
LOOKBACK_NS = 5 * 10**9
SWEEP_NS = 120 * 10**9  # longer than any insert may take (the database's timeouts)
SWEEP_EVERY = 10  # rounds of the tail
PAGE = 1000  # another instance's clock may be a little behind this one's


class TooManyStreams(Exception):
    pass


class LiveFeed:
    def __init__(self, per_recipient: int = 5, queue_size: int = 1000) -> None:
        self.per_recipient = per_recipient
        self.queue_size = queue_size
        self._streams: dict[str, set[asyncio.Queue[Doc | None]]] = {}
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._connected = asyncio.Event()

    @property
    def streams(self) -> int:
        return sum(len(s) for s in self._streams.values())

    def open_streams(self, recipient: str) -> int:
        return len(self._streams.get(recipient, ()))

    @contextlib.asynccontextmanager
    async def subscribe(self, recipient: str) -> AsyncIterator[asyncio.Queue[Doc | None]]:
        """A queue of this recipient's new notifications while the stream is open. None in
        it: the client fell too far behind, and the stream should end (it resumes with
        Last-Event-ID)."""
        mine = self._streams.setdefault(recipient, set())
        if len(mine) >= self.per_recipient:
            raise TooManyStreams(recipient)
        queue: asyncio.Queue[Doc | None] = asyncio.Queue(self.queue_size)
        mine.add(queue)
        self._connected.set()
        try:
            yield queue
        finally:
            mine.discard(queue)
            if not mine:
                del self._streams[recipient]
            if not self._streams:
                self._connected.clear()

    def publish(self, doc: Doc) -> None:
        if doc["_id"] in self._sent:
            return
        self._sent[doc["_id"]] = None
        if len(self._sent) > REMEMBERED:
            self._sent.popitem(last=False)
        for queue in self._streams.get(doc["recipient"], ()):
            try:
                queue.put_nowait(doc)
            except asyncio.QueueFull:
                # A client that does not read: end its stream rather than hold memory.
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)

    async def tail(self, notifications: AsyncCollection[Doc], interval: float) -> None:
        """Notifications other instances store, for this instance's streams (see above)."""
        cursor = f"{time.time_ns() - LOOKBACK_NS:020d}"
        for round_ in itertools.count(1):
            await self._connected.wait()
            if round_ % SWEEP_EVERY == 0:
                await self._sweep(notifications)
            found = await notifications.find({"seq": {"$gt": cursor}}).sort("seq", 1).to_list(PAGE)
            for doc in found:
                self.publish(doc)
            if len(found) == PAGE:
                cursor = found[-1]["seq"]  # more to read at once
                continue
            if found:
                # Keep looking a little behind: a slower clock's notification may come later.
                cursor = max(cursor, f"{int(found[-1]['seq']) - LOOKBACK_NS:020d}")
            await asyncio.sleep(interval)

    async def _sweep(self, notifications: AsyncCollection[Doc]) -> None:
        """Notifications stored well after they were stamped, for the streams open here."""
        since = f"{time.time_ns() - SWEEP_NS:020d}"
        query = {"recipient": {"$in": sorted(self._streams)}, "seq": {"$gt": since}}
        async for doc in notifications.find(query).sort("seq", 1):
            self.publish(doc)
