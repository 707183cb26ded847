"""shared's producer and consumer through the real broker: CloudEvents intact, poison
records dead-lettered, failing handlers retried without committing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import OutOfOrderSequenceNumber

from shared.contracts.volunteers import ShiftStarted
from shared.events import Event, to_record
from shared.kafka import (
    ConsumerStalled,
    EventConsumer,
    EventPublisher,
    Input,
    PartitionListener,
    RetryPolicy,
    ensure_topics,
)
from shared.runtime import supervise
from shared.topics import dlq
from tests.conftest import BrokerControl, Stack


def shift_event(community: str, n: int = 0) -> Event:
    return Event(
        source="/tests",
        community_id=community,
        subject=f"volunteer/v{n}",
        correlation_id=f"corr-{n}",
        data=ShiftStarted(
            volunteer_id=f"v{n}",
            shift_id=f"s{n}",
            grid_id="g3",
            until=datetime(2026, 5, 1, 18, 0, tzinfo=UTC),
        ),
    )


async def read_all(bootstrap: str, topic: str, count: int, timeout: float = 20) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    found.extend(records)
    finally:
        await consumer.stop()
    return found


async def run_consumer(consumer: EventConsumer) -> asyncio.Task[None]:
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(consumer.running.wait(), 30)
    return task


async def stop(task: asyncio.Task[None], *publishers: EventPublisher) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    for p in publishers:
        await p.stop()


async def recording_consumer(
    stack: Stack, topic: str, group: str, stall_seconds: float = 30.0
) -> tuple[EventConsumer, EventPublisher, list[str]]:
    """A one-partition topic, a started publisher, and a consumer that records the ids of
    the events it handles (not yet running)."""
    await ensure_topics(stack.kafka_bootstrap, [topic], partitions=1)
    publisher = EventPublisher(stack.kafka_bootstrap, "test")
    await publisher.start()
    seen: list[str] = []

    async def handler(received: Event) -> None:
        seen.append(received.id)

    consumer = EventConsumer(
        bootstrap=stack.kafka_bootstrap,
        group_id=group,
        topics=[topic],
        handler=handler,
        publisher=publisher,
        stall_seconds=stall_seconds,
    )
    return consumer, publisher, seen


async def test_event_round_trips_through_the_broker_with_every_attribute(
    stack: Stack, unique: str
) -> None:
    topic = f"t.roundtrip.{unique}"
    await ensure_topics(stack.kafka_bootstrap, [topic], partitions=3)
    publisher = EventPublisher(stack.kafka_bootstrap, "test")
    await publisher.start()
    sent = [shift_event(f"community-{i % 2}", i) for i in range(4)]
    for event in sent:
        await publisher.publish(topic, event)

    received: list[Event] = []
    done = asyncio.Event()

    async def handler(event: Event) -> None:
        received.append(event)
        if len(received) == len(sent):
            done.set()

    consumer = EventConsumer(
        bootstrap=stack.kafka_bootstrap,
        group_id=f"g-{unique}",
        topics=[topic],
        handler=handler,
        publisher=publisher,
    )
    task = await run_consumer(consumer)
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await stop(task, publisher)

    assert sorted(received, key=lambda e: e.id) == sorted(sent, key=lambda e: e.id)
    raw = await read_all(stack.kafka_bootstrap, topic, len(sent))
    by_id = {dict(r.headers)["ce_id"].decode(): r for r in raw}
    for event in sent:
        record = by_id[event.id]
        headers = dict(record.headers)
        assert record.key == event.community_id.encode()
        assert headers["ce_type"] == b"doorstep.shift.started.v1"
        assert headers["ce_specversion"] == b"1.0"
        assert headers["ce_source"] == b"/tests"
        assert headers["ce_subject"] == event.subject.encode()  # type: ignore[union-attr]
        assert headers["ce_correlationid"] == event.correlation_id.encode()  # type: ignore[union-attr]
        assert headers["content-type"] == b"application/json"
    # Same key, same partition: one community's events stay in order.
    partitions = {r.key: set() for r in raw}
    for r in raw:
        partitions[r.key].add(r.partition)
    assert all(len(p) == 1 for p in partitions.values())


async def test_a_producer_whose_sender_died_of_a_sequence_error_is_replaced_and_publishes(
    stack: Stack, unique: str
) -> None:
    """aiokafka's idempotent producer dies for good on a sequence error from a restarted
    broker (every send then raises it again): the publisher must not be wedged by it."""
    topic = f"t.renewed.{unique}"
    await ensure_topics(stack.kafka_bootstrap, [topic], partitions=1)
    publisher = EventPublisher(stack.kafka_bootstrap, "test")
    await publisher.start()
    try:
        await publisher.publish(topic, shift_event("datong", 1))
        # What the sender's death leaves behind: the accumulator fails every later send.
        publisher._producer._message_accumulator.fail_all(OutOfOrderSequenceNumber())
        await publisher.publish(topic, shift_event("datong", 2))
        await publisher.publish_many(topic, [shift_event("datong", 3)])
    finally:
        await publisher.stop()
    assert publisher.renewals == 1
    raw = await read_all(stack.kafka_bootstrap, topic, 3)
    assert sorted(dict(r.headers)["ce_subject"] for r in raw) == [
        b"volunteer/v1",
        b"volunteer/v2",
        b"volunteer/v3",
    ]


async def test_poison_records_go_to_the_dlq_and_the_next_good_record_is_handled(
    stack: Stack, unique: str
) -> None:
    topic = f"t.poison.{unique}"
    await ensure_topics(stack.kafka_bootstrap, [topic], partitions=1)
    good = shift_event("datong", 1)
    doomed = shift_event("datong", 2)  # its handler always fails: dead-lettered after retries
    good_record = to_record(good)
    unknown_type = [  # a later version's event: skipped
        (k, b"doorstep.no.such.thing.v1" if k == "ce_type" else v) for k, v in good_record.headers
    ]

    raw = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await raw.start()
    await raw.send_and_wait(topic, b"{not json", key=b"datong", headers=good_record.headers)
    await raw.send_and_wait(topic, good_record.value, key=b"datong", headers=unknown_type)
    await raw.send_and_wait(topic, b"{}", key=b"datong", headers=[])  # no CloudEvent headers
    doomed_record = to_record(doomed)
    await raw.send_and_wait(
        topic, doomed_record.value, key=b"datong", headers=doomed_record.headers
    )
    await raw.send_and_wait(topic, good_record.value, key=b"datong", headers=good_record.headers)
    await raw.stop()

    handled: list[str] = []
    done = asyncio.Event()

    async def handler(event: Event) -> None:
        if event.id == doomed.id:
            raise RuntimeError("cannot handle this one")
        handled.append(event.id)
        done.set()

    publisher = EventPublisher(stack.kafka_bootstrap, "test")
    await publisher.start()
    consumer = EventConsumer(
        bootstrap=stack.kafka_bootstrap,
        group_id=f"g-{unique}",
        topics=[topic],
        handler=handler,
        publisher=publisher,
        policy=RetryPolicy(attempts=3, first_backoff=0.01),
    )
    task = await run_consumer(consumer)
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await stop(task, publisher)

    assert handled == [good.id]
    # A type this consumer does not know yet (a newer producer's) is skipped, not dead.
    dead = await read_all(stack.kafka_bootstrap, dlq(topic), 3)
    assert [r.offset for r in dead] == [0, 1, 2]
    headers = [dict(r.headers) for r in dead]
    assert [h["dlq_offset"] for h in headers] == [b"0", b"2", b"3"]
    assert all(h["dlq_topic"] == topic.encode() for h in headers)
    assert all(h["dlq_group"] == f"g-{unique}".encode() for h in headers)
    assert headers[2]["dlq_attempts"] == b"3"
    assert b"cannot handle this one" in headers[2]["dlq_error"]
    assert dead[0].value == b"{not json" and dead[0].key == b"datong"


async def test_a_batch_its_handler_fails_on_is_handled_again_event_by_event(
    stack: Stack, unique: str
) -> None:
    # A batch handler stores a fetch at once; one poison event in it must not stop the
    # others or be retried for ever: the batch goes again one event at a time, and only
    # the poison one is dead-lettered.
    topic = f"t.together.{unique}"
    await ensure_topics(stack.kafka_bootstrap, [topic], partitions=1)
    publisher = EventPublisher(stack.kafka_bootstrap, "test")
    await publisher.start()
    events = [shift_event("datong", n) for n in range(5)]
    doomed = events[2]
    for event in events:
        await publisher.publish(topic, event)

    batches: list[list[str]] = []
    handled: list[str] = []
    done = asyncio.Event()

    async def together(inputs: list[Input]) -> None:
        batches.append([i.event.id for i in inputs])
        if doomed.id in batches[-1]:
            raise RuntimeError("cannot handle this batch")
        handled.extend(batches[-1])

    async def one(event: Event) -> None:
        if event.id == doomed.id:
            raise RuntimeError("cannot handle this one")
        handled.append(event.id)
        if len(handled) == 4:
            done.set()

    consumer = EventConsumer(
        bootstrap=stack.kafka_bootstrap,
        group_id=f"g-{unique}",
        topics=[topic],
        handler=one,
        batch_handler=together,
        publisher=publisher,
        policy=RetryPolicy(attempts=2, first_backoff=0.01),
    )
    task = await run_consumer(consumer)
    try:
        await asyncio.wait_for(done.wait(), 30)
        dead = await read_all(stack.kafka_bootstrap, dlq(topic), 1)
    finally:
        await stop(task, publisher)

    assert sorted(handled) == sorted(e.id for e in events if e is not doomed)
    assert any(len(b) > 1 for b in batches)  # the fetch came as one batch first
    assert [dict(r.headers)["dlq_offset"] for r in dead] == [b"2"]


async def test_a_failing_handler_is_retried_and_nothing_is_committed_until_it_succeeds(
    stack: Stack, unique: str
) -> None:
    topic = f"t.retry.{unique}"
    group = f"g-{unique}"
    await ensure_topics(stack.kafka_bootstrap, [topic], partitions=1)
    publisher = EventPublisher(stack.kafka_bootstrap, "test")
    await publisher.start()
    event = shift_event("datong", 7)
    await publisher.publish(topic, event)

    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    tp = TopicPartition(topic, 0)

    async def committed() -> int | None:
        offsets = await admin.list_consumer_group_offsets(group)
        meta = offsets.get(tp)
        return None if meta is None or meta.offset < 0 else meta.offset

    attempts = 0
    committed_while_failing: list[int | None] = []
    done = asyncio.Event()

    async def handler(received: Event) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            committed_while_failing.append(await committed())
            raise RuntimeError(f"transient failure {attempts}")
        done.set()

    consumer = EventConsumer(
        bootstrap=stack.kafka_bootstrap,
        group_id=group,
        topics=[topic],
        handler=handler,
        publisher=publisher,
        policy=RetryPolicy(attempts=5, first_backoff=0.05),
    )
    task = await run_consumer(consumer)
    try:
        await asyncio.wait_for(done.wait(), 30)
        async with asyncio.timeout(10):
            while await committed() != 1:
                await asyncio.sleep(0.1)
    finally:
        await stop(task, publisher)
        await admin.close()

    assert attempts == 3
    assert committed_while_failing == [None, None]
    assert await read_dlq_is_empty(stack, topic)


async def read_dlq_is_empty(stack: Stack, topic: str) -> bool:
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(dlq(topic), 0)
        end = await consumer.end_offsets([tp])
        return end[tp] == 0
    finally:
        await consumer.stop()


async def test_a_consumer_that_stopped_is_run_again_with_a_fresh_client_and_consumes(
    stack: Stack, unique: str
) -> None:
    """The runtime's supervisor calls ``run`` again after any failure; aiokafka refuses to
    start a stopped client, so each run must make its own."""
    topic = f"t.again.{unique}"
    consumer, publisher, seen = await recording_consumer(stack, topic, f"g-{unique}")
    first = await run_consumer(consumer)
    await publisher.publish(topic, shift_event("datong", 1))
    async with asyncio.timeout(20):
        while len(seen) < 1:
            await asyncio.sleep(0.1)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert not consumer.running.is_set()  # /readyz says 503 meanwhile

    second = await run_consumer(consumer)
    await publisher.publish(topic, shift_event("datong", 2))
    try:
        async with asyncio.timeout(30):
            while len(seen) < 2:
                await asyncio.sleep(0.1)
    finally:
        await stop(second, publisher)
    assert len(set(seen)) == 2


async def given_up_then_fresh(
    consumer: EventConsumer,
    wedge: Callable[[AIOKafkaConsumer], Awaitable[None]],
    handled: Callable[[], bool],
) -> bool:
    """Runs the consumer until it has partitions, wedges its client, and expects the run
    to end stalled; then a fresh run (what the supervisor does) until ``handled()``.
    Whether it was handled before the fresh run."""
    first = await run_consumer(consumer)
    second: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(30):
            while consumer.client is None or not consumer.client.assignment():
                await asyncio.sleep(0.1)
        await wedge(consumer.client)
        with pytest.raises(ConsumerStalled):
            await asyncio.wait_for(first, 30)
        early = handled()
        second = await run_consumer(consumer)
        async with asyncio.timeout(30):
            while not handled():
                await asyncio.sleep(0.1)
        return early
    finally:
        for task in (first, second):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


async def test_a_consumer_that_fetches_nothing_while_records_wait_gives_up_its_client(
    stack: Stack, unique: str
) -> None:
    """After a long broker outage an aiokafka consumer can keep its assignment and fetch
    nothing, for good. Stood in for by pausing its partitions: the run must end (stalled),
    and a fresh run consumes what waited."""
    topic = f"t.stall.{unique}"
    consumer, publisher, seen = await recording_consumer(
        stack, topic, f"g-{unique}", stall_seconds=2
    )

    async def paused(client: AIOKafkaConsumer) -> None:
        client.pause(*client.assignment())
        await publisher.publish(topic, shift_event("datong", 1))

    try:
        assert not await given_up_then_fresh(consumer, paused, lambda: bool(seen))
    finally:
        await publisher.stop()


async def test_a_consumer_whose_commit_never_returns_gives_up_its_client(
    stack: Stack, unique: str
) -> None:
    """After a broker restart an aiokafka client can wait on its group coordinator for
    good: its commit never returns, and the service never handles another record. Stood in
    for by a commit that never returns: the run must end (stalled) instead of waiting for
    ever, and a fresh run handles what came after."""
    topic = f"t.wedged.{unique}"
    consumer, publisher, seen = await recording_consumer(
        stack, topic, f"g-{unique}", stall_seconds=2
    )
    before, after = shift_event("datong", 1), shift_event("datong", 2)

    async def never_returns(*args: object, **kwargs: object) -> None:
        await asyncio.Event().wait()

    async def commit_hangs(client: AIOKafkaConsumer) -> None:
        client.commit = never_returns  # type: ignore[method-assign]
        await publisher.publish(topic, before)
        async with asyncio.timeout(30):
            while before.id not in seen:
                await asyncio.sleep(0.1)
        await publisher.publish(topic, after)  # handled, then waits on the first commit

    try:
        await given_up_then_fresh(consumer, commit_hangs, lambda: after.id in seen)
    finally:
        await publisher.stop()


async def test_a_consumer_given_up_while_the_broker_is_away_consumes_again_once_it_is_back(
    own_broker: BrokerControl, unique: str
) -> None:
    """The wedge comes with a broker outage: the client is given up while the broker is
    away, and closing it cannot finish. The supervisor's next run must not wait on that
    close: it starts again, retrying, and consumes once the broker is back."""
    stack = Stack(own_broker.bootstrap, "", "own")
    topic = f"t.away.{unique}"
    consumer, publisher, seen = await recording_consumer(
        stack, topic, f"g-{unique}", stall_seconds=5
    )
    before, after, later = (shift_event("datong", n) for n in (1, 2, 3))

    async def never_returns(*args: object, **kwargs: object) -> None:
        await asyncio.Event().wait()

    supervised = asyncio.create_task(supervise("consumer", consumer.run))
    try:
        async with asyncio.timeout(60):
            while consumer.client is None or not consumer.client.assignment():
                await asyncio.sleep(0.1)
            consumer.client.commit = never_returns  # type: ignore[method-assign]
            await publisher.publish(topic, before)
            while before.id not in seen:
                await asyncio.sleep(0.1)
            await publisher.publish(topic, after)
            while after.id not in seen:
                await asyncio.sleep(0.1)
        own_broker.stop()  # the run now waits on the first commit: given up, broker away
        await asyncio.sleep(10)
        own_broker.start()
        await publisher.publish(topic, later)
        async with asyncio.timeout(90):
            while later.id not in seen:
                await asyncio.sleep(0.2)
    finally:
        supervised.cancel()
        await asyncio.gather(supervised, return_exceptions=True)
        await publisher.stop()


class Owning(PartitionListener):
    """As an owner does: it stores only what is on a partition it holds; a revoke (the
    start of a rebalance) lets go of everything at once."""

    def __init__(self) -> None:
        self.owned: set[TopicPartition] = set()
        self.revoked = asyncio.Event()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.owned = set(assigned)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.owned = set()
        if revoked:  # the first join revokes nothing
            self.revoked.set()
        # Letting go takes a moment (lanes stopped, state dropped); the member rejoins only
        # after it, so the group waits in PreparingRebalance meanwhile.
        await asyncio.sleep(2.0)


async def test_records_skipped_because_a_rebalance_began_mid_batch_are_not_committed(
    stack: Stack, unique: str
) -> None:
    """The first member's batch is still being handled when a second member joins: its
    listener lets go of the partition, so its handler stores none of the batch. The group
    is still on the old generation, whose commits the broker takes: committing that batch
    would skip its records for whoever owns the partition next."""
    topic, group = f"t.rebalance.{unique}", f"g-{unique}"
    await ensure_topics(stack.kafka_bootstrap, [topic], partitions=1)
    publisher = EventPublisher(stack.kafka_bootstrap, "test")
    await publisher.start()
    stored: list[str] = []

    def member(listener: Owning, first_batch_waits: bool) -> EventConsumer:
        async def handle(inputs: list[Input]) -> None:
            if first_batch_waits and not listener.revoked.is_set():
                await asyncio.wait_for(listener.revoked.wait(), 60)  # the rebalance begins
            stored.extend(
                i.event.id
                for i in inputs
                if TopicPartition(i.record.topic, i.record.partition) in listener.owned
            )

        return EventConsumer(
            bootstrap=stack.kafka_bootstrap,
            group_id=group,
            topics=[topic],
            batch_handler=handle,
            publisher=publisher,
            listener=listener,
        )

    events = [shift_event("datong", n) for n in range(5)]
    for event in events:
        await publisher.publish(topic, event)
    first_listener = Owning()
    first = await run_consumer(member(first_listener, first_batch_waits=True))
    second: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(30):
            while not first_listener.owned:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # its first batch is fetched and waits in the handler
        second = await run_consumer(member(Owning(), first_batch_waits=False))
        async with asyncio.timeout(90):
            while set(stored) != {e.id for e in events}:
                await asyncio.sleep(0.2)
    finally:
        if second is not None:
            second.cancel()
            await asyncio.gather(second, return_exceptions=True)
        await stop(first, publisher)
