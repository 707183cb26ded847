"""The consumer loop against a scripted client: what it commits and where it reads next
when a rebalance comes in the middle of a batch."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from shared.contracts import orders as o
from shared.events import Event, to_record
from shared.kafka import EventConsumer, Input, PartitionListener

TP = TopicPartition("orders.commands", 0)
KEY = "orders.commands/0"


def record(offset: int) -> ConsumerRecord[bytes, bytes]:
    community = "a" if offset == 100 else "b"
    cmd = o.ReviewOrder(command_id=f"c{offset}", actor="staff", order_id=f"o{offset}")
    r = to_record(Event(source="/t", community_id=community, data=cmd))
    return ConsumerRecord(TP.topic, 0, offset, 0, 0, r.key, r.value, None, 0, 0, r.headers)


class ScriptedClient:
    """One partition holding offsets 100-199; fetches of ``sizes`` records from the
    position; a new assignment starts at the committed offset, as aiokafka's does."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.position = 100
        self.committed = 100
        self.fetched: list[list[int]] = []
        self.listener: Any = None

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        await self.listener.on_partitions_assigned({TP})

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    async def getmany(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        if not self.sizes:
            await asyncio.sleep(3600)
        size = self.sizes.pop(0)
        records = [record(n) for n in range(self.position, min(self.position + size, 200))]
        self.position += len(records)
        self.fetched.append([r.offset for r in records])
        return {TP: records}

    async def rebalance(self) -> None:
        """The group re-forms and hands the partition back: it starts at the commit."""
        await self.listener.on_partitions_revoked({TP})
        self.position = self.committed
        await self.listener.on_partitions_assigned({TP})

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed = offsets[TP]

    async def stop(self) -> None:
        pass


class Lanes(PartitionListener):
    """An owner whose community "a" cannot be stored yet: its record waits in a lane,
    held from the commit, until a rebalance lets go of it."""

    def __init__(self) -> None:
        self.waiting: list[int] = []

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.waiting.clear()

    def held_offsets(self) -> dict[str, int]:
        return {KEY: min(self.waiting)} if self.waiting else {}


async def test_a_record_waiting_in_a_lane_is_read_again_after_a_rebalance_mid_batch() -> None:
    client = ScriptedClient(sizes=[51, 10, 60])
    lanes = Lanes()
    seen: list[list[int]] = []

    async def handle(inputs: list[Input]) -> None:
        offsets = [i.record.offset for i in inputs]
        seen.append(offsets)
        if len(seen) == 1:
            lanes.waiting.append(100)  # community a's record waits; b's 101-150 are stored
        if len(seen) == 2:
            await client.rebalance()  # during the batch from 151

    class Scripted(EventConsumer):
        def _new_client(self) -> Any:
            return client

    consumer = Scripted(
        bootstrap="unused",
        group_id="orders",
        topics=[TP.topic],
        publisher=None,  # type: ignore[arg-type]
        batch_handler=handle,
        listener=lanes,
    )
    run = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(5):
            while len(seen) < 3:
                await asyncio.sleep(0.01)
    finally:
        run.cancel()
    assert seen[2][0] == 100  # read again from the record nobody stored


class Publisher:
    def __init__(self) -> None:
        self.dead: list[bytes] = []

    async def publish_raw(self, topic: str, value: bytes, key: bytes, headers: Any) -> None:
        self.dead.append(value)


async def test_an_event_of_a_type_or_version_not_known_yet_is_skipped_not_dead_lettered() -> None:
    # A producer already upgraded publishes a .v2 while this consumer knows only .v1.
    client = ScriptedClient(sizes=[3])
    seen: list[int] = []

    def later(offset: int) -> ConsumerRecord[bytes, bytes]:
        r = record(offset)
        headers = [(k, b"doorstep.order.review.v2" if k == "ce_type" else v) for k, v in r.headers]
        return ConsumerRecord(TP.topic, 0, offset, 0, 0, r.key, r.value, None, 0, 0, headers)

    async def getmany(timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        if client.sizes:
            client.sizes.pop()
            return {TP: [record(100), later(101), record(102)]}
        await asyncio.sleep(3600)
        return {}

    client.getmany = getmany  # type: ignore[method-assign]

    async def handle(inputs: list[Input]) -> None:
        seen.extend(i.record.offset for i in inputs)

    class Scripted(EventConsumer):
        def _new_client(self) -> Any:
            return client

    publisher = Publisher()
    consumer = Scripted(
        bootstrap="unused",
        group_id="orders",
        topics=[TP.topic],
        publisher=publisher,  # type: ignore[arg-type]
        batch_handler=handle,
        listener=Lanes(),
    )
    run = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(5):
            while len(seen) < 2:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
    finally:
        run.cancel()
    assert seen == [100, 102] and publisher.dead == []
    assert client.committed == 103  # skipped, and passed


async def test_a_paced_consumer_fetches_at_most_once_per_pace() -> None:
    # A view (the sub-district's) reads every second: its records come in fewer, larger
    # batches; an owner that decides reads at once.
    fetched_at: list[float] = []

    async def paced(pace: float, count: int) -> list[float]:
        client = ScriptedClient(sizes=[1] * count)
        fetched_at.clear()
        real = client.getmany

        async def getmany(timeout_ms: int) -> dict[TopicPartition, list[Any]]:
            fetched_at.append(asyncio.get_running_loop().time())
            return await real(timeout_ms)

        client.getmany = getmany  # type: ignore[method-assign]

        class Scripted(EventConsumer):
            def _new_client(self) -> Any:
                return client

        async def handle(inputs: list[Input]) -> None:
            pass

        consumer = Scripted(
            bootstrap="unused",
            group_id="district",
            topics=[TP.topic],
            publisher=None,  # type: ignore[arg-type]
            batch_handler=handle,
            listener=Lanes(),
            pace_seconds=pace,
        )
        run = asyncio.create_task(consumer.run())
        try:
            async with asyncio.timeout(5):
                while len(fetched_at) < count:
                    await asyncio.sleep(0.005)
        finally:
            run.cancel()
        return [b - a for a, b in itertools.pairwise(fetched_at)]

    assert min(await paced(0.2, 4)) >= 0.19
    assert max(await paced(0.0, 4)) < 0.1
