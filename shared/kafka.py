"""Kafka plumbing on aiokafka: topic creation, an idempotent publisher, a consumer with an
explicit error policy (bounded retries, then the dead-letter topic), and a readiness probe.

Every client starts lazily and keeps retrying while the broker is away, so a service that
starts before Kafka reports not-ready instead of crashing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TopicAlreadyExistsError,
    UnknownProducerId,
)
from prometheus_client import Counter, Histogram
from pymongo.errors import ConnectionFailure

from shared import telemetry, trace
from shared.events import Event, UndecodableRecord, UnknownEventType, from_record, to_record
from shared.log import bind_contextvars, get_logger, unbind_contextvars
from shared.topics import dlq

log = get_logger(__name__)

EVENTS_PUBLISHED = Counter("doorstep_events_published_total", "Events published", ["topic", "type"])
EVENTS_HANDLED = Counter(
    "doorstep_events_handled_total", "Records consumed, by outcome", ["topic", "outcome"]
)
HANDLE_SECONDS = Histogram("doorstep_event_handle_seconds", "Time to handle one record", ["topic"])

Handler = Callable[[Event], Awaitable[None]]
T = TypeVar("T")


async def retry_forever(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` until it succeeds, backing off up to 5 s between tries."""
    delay = 0.2
    while True:
        try:
            return await attempt()
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("kafka.unavailable", what=what, error=repr(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def within(seconds: float, call: Awaitable[T]) -> T:
    """``call``'s result if it is done within ``seconds``; else it is cancelled, not waited
    for, and TimeoutError raised. ``asyncio.wait_for`` waits for the cancelled call to end,
    which bounds nothing when the call swallows its cancellation, as aiokafka's closing
    tasks can (aio-libs/aiokafka#983)."""
    task = asyncio.ensure_future(call)
    # An abandoned call's exception is nobody's news (it would be logged as never retrieved).
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        await asyncio.wait({task}, timeout=seconds)
    finally:
        if not task.done():
            task.cancel()
    if not task.done():
        raise TimeoutError
    if task.cancelled():
        # Not by us (ours ended above): aiokafka's close can end by a cancellation of its
        # own. Raised as it is, it would look like a stop to whoever awaits this, and a
        # supervisor told to stop does not restart: the consumer was gone for good.
        raise RuntimeError(f"{call!r} ended cancelled from within")
    return task.result()


async def ensure_topics(
    bootstrap: str, topics: Iterable[str], partitions: int, replication: int = 1
) -> None:
    """Create each topic and its DLQ if missing. Idempotent; safe from many instances.
    ``replication``: copies of each (3 on a three-broker cluster, whose
    ``min.insync.replicas=2`` makes an acks=all write wait for two of them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for topic in topics for t in (topic, dlq(topic))]
        missing = [
            NewTopic(t, num_partitions=partitions, replication_factor=replication)
            for t in dict.fromkeys(wanted)
            if t not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another instance won
                await admin.create_topics(missing)
            log.info("kafka.topics_created", topics=[t.name for t in missing])
    finally:
        await admin.close()


class EventPublisher:
    """Idempotent producer: acks from all in-sync replicas, no duplicates on retry.

    aiokafka's idempotent producer never expires a batch; but when the broker answers a
    sequence error (after it lost its producer state, e.g. restarted mid-batch) its sender
    task dies and every later send fails with that same error, for good (aio-libs/aiokafka
    #1017). Such a producer is replaced by a fresh one (a new producer id, sequences from
    zero) and the send tried once more; a copy that reached the broker before is dropped by
    consumers by its event id, as every re-publish is.
    """

    # Errors that leave the producer unusable, as opposed to a broker that is away.
    FATAL = (OutOfOrderSequenceNumber, ProducerFenced, UnknownProducerId, InvalidProducerEpoch)

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._producer = self._new_producer()
        self._started = asyncio.Event()
        self._renewing = asyncio.Lock()
        self.renewals = 0

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",  # aiokafka's default is acks=1
            enable_idempotence=True,  # aiokafka's default is False
            linger_ms=2,
        )

    async def start(self) -> None:
        await retry_forever("producer start", self._producer.start)
        self._started.set()

    async def stop(self) -> None:
        if self._started.is_set():
            await self._producer.stop()

    async def _sending(self, send: Callable[[AIOKafkaProducer], Awaitable[T]]) -> T:
        await self._started.wait()
        producer = self._producer
        try:
            return await send(producer)
        except self.FATAL as exc:
            await self._renew(producer, exc)
            return await send(self._producer)

    async def _renew(self, broken: AIOKafkaProducer, error: Exception) -> None:
        async with self._renewing:
            if self._producer is not broken:
                return  # another sender renewed it already
            log.warning("kafka.producer_renewed", error=repr(error))
            fresh = self._new_producer()
            await retry_forever("producer restart", fresh.start)
            self._producer = fresh
            self.renewals += 1
        with contextlib.suppress(Exception):
            await within(5, broken.stop())

    async def publish(self, topic: str, event: Event) -> None:
        record = to_record(event)
        await self._sending(
            lambda p: p.send_and_wait(topic, record.value, key=record.key, headers=record.headers)
        )
        EVENTS_PUBLISHED.labels(topic, event.type).inc()

    async def publish_many(self, topic: str, events: list[Event]) -> None:
        """Publish in order, waiting once for all acknowledgements."""
        records = [to_record(event) for event in events]

        async def send(producer: AIOKafkaProducer) -> None:
            pending = [
                await producer.send(topic, r.value, key=r.key, headers=r.headers) for r in records
            ]
            await asyncio.gather(*pending)

        await self._sending(send)
        for event in events:
            EVENTS_PUBLISHED.labels(topic, event.type).inc()

    async def publish_raw_many(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        """(key, value) records in order, waiting once for all acknowledgements."""

        async def send(producer: AIOKafkaProducer) -> None:
            pending = [await producer.send(topic, value, key=key) for key, value in records]
            await asyncio.gather(*pending)

        await self._sending(send)

    async def publish_raw(
        self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        await self._sending(lambda p: p.send_and_wait(topic, value, key=key, headers=headers))


class PartitionListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hooks for a consumer whose owner keeps per-partition state. ``partition_count`` is
    the topics' real partition count, told by the consumer before each assignment."""

    partition_count: int | None = None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None: ...

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None: ...

    def held_offsets(self) -> dict[str, int]:
        """Per "topic/partition", an offset not to commit past (records still pending)."""
        return {}


@dataclass
class RetryPolicy:
    attempts: int = 5
    first_backoff: float = 0.1
    max_backoff: float = 2.0


@dataclass(frozen=True)
class Input:
    """A decoded record: the event, and where it came from."""

    record: ConsumerRecord[bytes, bytes]
    event: Event

    @property
    def key(self) -> str:
        """The source's name in stored offsets: ``topic/partition``."""
        return f"{self.record.topic}/{self.record.partition}"

    @property
    def offset(self) -> int:
        return self.record.offset


BatchHandler = Callable[[list[Input]], Awaitable[None]]


async def dead_letter(
    publisher: EventPublisher,
    record: ConsumerRecord[bytes, bytes],
    error: str,
    *,
    attempts: int,
    group: str,
) -> None:
    """A copy of the record on its topic's DLQ: key, value and headers kept, plus where it
    came from and why it was given up."""
    headers = [
        *(record.headers or ()),
        ("dlq_error", error[:2000].encode()),
        ("dlq_topic", record.topic.encode()),
        ("dlq_partition", str(record.partition).encode()),
        ("dlq_offset", str(record.offset).encode()),
        ("dlq_group", group.encode()),
        ("dlq_attempts", str(attempts).encode()),
    ]
    log.error("kafka.dead_lettered", topic=record.topic, offset=record.offset, error=error)
    await publisher.publish_raw(dlq(record.topic), record.value, record.key, headers)


class EventConsumer:
    """Consumes CloudEvents and hands them on; commits only what was handled.

    Two ways to hand them on:
    - ``handler``: one event at a time, with this error policy per record: the handler
      raises → retried with backoff, up to ``policy.attempts`` times, then DLQ; the
      database is unreachable → retried until it is back (never dead-lettered: the record
      is fine, the world is not);
    - ``batch_handler``: every decoded record of a fetch at once; the handler owns its
      error policy (an owner's log: ``shared.owner``) and returns once all are stored;
    - both: the batch handler first (one round trip per collection rather than per
      event); the database away → retried until it is back; it raises anything else →
      the batch is handed on again one event at a time with the first policy, so a
      poison event is dead-lettered alone. The handlers must be idempotent.
    Either way, a record that cannot be parsed (bad JSON, unknown type, missing
    attributes) goes to its topic's DLQ at once, records of a partition revoked while the
    batch waited are not handed on, and offsets are committed after the handler returned —
    unless a rebalance began meanwhile (the listener let go of what it held): then nothing
    of that batch is committed, and it is read again.

    Each ``run`` makes a fresh client (aiokafka refuses to start a stopped one), so the
    runtime's supervisor can restart a consumer that stopped for any reason; ``running``
    is set only while one runs, for /readyz. A client that stops moving — it fetches
    nothing while records wait, or a fetch or commit outlasts ``stall_seconds`` — ends
    its run (``ConsumerStalled``), so the supervisor starts a fresh one.
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        publisher: EventPublisher,
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
        policy: RetryPolicy | None = None,
        listener: PartitionListener | None = None,
        client_id: str | None = None,
        stall_seconds: float = 30.0,
        pace_seconds: float = 0.0,
    ) -> None:
        assert handler is not None or batch_handler is not None, "a handler or a batch handler"
        self.stall_seconds = stall_seconds
        # At most one fetch this often (0: at once). A view can wait a second: its records
        # then come in larger batches, one entry per community per batch instead of one
        # per event, and it takes that much less of the database from the deciders.
        self.pace_seconds = pace_seconds
        self.client: AIOKafkaConsumer | None = None  # the running client (diagnostics, tests)
        self.group_id = group_id
        self.topics = list(topics)
        self._bootstrap = bootstrap
        self._client_id = client_id or group_id
        self._handler = handler
        self._batch = batch_handler
        self._batch_handler = (
            self._together if handler and batch_handler else batch_handler or self._one_by_one
        )
        self._publisher = publisher
        self._policy = policy or RetryPolicy()
        self._listener = listener
        self.running = asyncio.Event()
        self._committing: asyncio.Task[None] | None = None
        self.revocations = 0  # rebalances begun (the listener told to let go), ever
        self._unknown_types: set[str] = set()  # said once each

    def _new_client(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self.group_id,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Same partition number of every topic on one instance: one writer per community.
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=500,
            # Only what the brokers committed (below the high watermark: written to every
            # in-sync replica) is ever read, and no aborted transaction's records.
            isolation_level="read_committed",
        )

    async def run(self) -> None:
        """Consume until cancelled or the client fails (then the supervisor runs it again)."""
        consumer = self._new_client()

        async def start() -> None:
            listener = None if self._listener is None else _Told(consumer, self._listener, self)
            consumer.subscribe(self.topics, listener=listener)
            await consumer.start()

        try:
            await retry_forever(f"consumer {self.group_id} start", start)
            self.client = consumer
            self.running.set()
            progress = fetched_at = time.monotonic()
            while True:
                if self.pace_seconds:
                    await asyncio.sleep(max(0.0, fetched_at + self.pace_seconds - time.monotonic()))
                    fetched_at = time.monotonic()
                revocations = self.revocations
                # What lanes wait to store from earlier batches (not committed past): a
                # rebalance lets go of it, so it must be read again from there.
                held_before = self._listener.held_offsets() if self._listener is not None else {}
                batches = await self._waiting("fetch", consumer.getmany(timeout_ms=500))
                if any(batches.values()):
                    progress = time.monotonic()
                elif time.monotonic() - progress > self.stall_seconds:
                    await self._check_stalled(consumer)
                    progress = time.monotonic()
                inputs: list[Input] = []
                for records in batches.values():
                    for record in records:
                        decoded = await self._decode(record)
                        if decoded is not None:
                            inputs.append(decoded)
                assigned = consumer.assignment()
                inputs = [
                    i
                    for i in inputs
                    if TopicPartition(i.record.topic, i.record.partition) in assigned
                ]
                if inputs:
                    await self._batch_handler(inputs)
                if self.revocations != revocations:
                    # A rebalance began while this batch was fetched or handled. The
                    # listener has let go of its communities (an owner stores nothing for
                    # one no longer its own) and of what its lanes held; the old assignment
                    # is still current until the group re-forms, and the broker accepts
                    # this generation's commits meanwhile, so committing now could skip
                    # records nobody stored. Commit nothing: they are read again, and what
                    # was stored is skipped by its offsets. Read again from the first
                    # record not stored: this batch's first, or one a lane held before it
                    # (not the batch's first: a record parked earlier would be skipped).
                    for tp in consumer.assignment():
                        lane = held_before.get(f"{tp.topic}/{tp.partition}")
                        starts = [r[0].offset for r in [batches.get(tp)] if r]
                        starts += [lane] if lane is not None else []
                        if starts:
                            consumer.seek(tp, min(starts))
                    continue
                # Only what was handed on, and only if still ours: records dropped because
                # their partition was revoked mid-fetch must be read again by whoever owns
                # it now, even if the partition came straight back to this instance.
                still = consumer.assignment()
                for tp, records in batches.items():
                    if records and tp not in assigned and tp in still:
                        consumer.seek(tp, records[0].offset)
                held = self._listener.held_offsets() if self._listener is not None else {}
                await self._commit(
                    consumer,
                    {
                        tp: min(
                            records[-1].offset + 1, held.get(f"{tp.topic}/{tp.partition}", 1 << 62)
                        )
                        for tp, records in batches.items()
                        if records and tp in assigned and tp in still
                    },
                )
        finally:
            self.running.clear()
            self.client = None
            with contextlib.suppress(Exception):
                await within(5, self._committed())
            with contextlib.suppress(Exception):
                await within(5, consumer.stop())

    async def _waiting(self, what: str, call: Awaitable[T]) -> T:
        """A wait on the client (a fetch, the last commit) outlasting ``stall_seconds``:
        the client is given up. A fetch answers within half a second, and a commit once the
        broker is back; yet after a broker restart an aiokafka client can wait on its group
        coordinator for good, commit and all (seen in the broker-down fault test: one
        service of four never handled another record). A fresh client rejoins and re-reads
        from the last commit; the handlers' own waits (the database away) are not bounded."""
        try:
            return await within(self.stall_seconds, call)
        except TimeoutError:
            log.warning(
                "kafka.consumer_stalled",
                group=self.group_id,
                waiting_on=what,
                seconds=self.stall_seconds,
            )
            raise ConsumerStalled(self.group_id) from None

    async def _check_stalled(self, consumer: AIOKafkaConsumer) -> None:
        """Fetching nothing for a while is normal; fetching nothing while the broker holds
        records past our position is not: after a long broker outage an aiokafka consumer
        can keep its old assignment and fetch nothing, for good (seen in the broker-down
        fault test). Then this client is given up; the supervisor starts a fresh one."""
        assigned = list(consumer.assignment())
        if not assigned:
            return
        try:
            ends = await within(10, consumer.end_offsets(assigned))
        except (KafkaError, TimeoutError):
            return  # the broker is away: nothing to conclude
        behind: dict[str, int | str] = {}
        for tp in assigned:
            try:
                position = await within(10, consumer.position(tp))
            except KafkaError:
                return  # rebalanced meanwhile: nothing to conclude
            except TimeoutError:
                # The partition leaders answered, yet the client cannot say where it is
                # (its committed offset comes through the group coordinator): wedged too.
                behind[f"{tp.topic}/{tp.partition}"] = "no position"
                continue
            if ends[tp] > position:
                behind[f"{tp.topic}/{tp.partition}"] = ends[tp] - position
        if behind:
            log.warning("kafka.consumer_stalled", group=self.group_id, behind=behind)
            raise ConsumerStalled(self.group_id)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Commit in the background while the next batch is fetched and handled (a broker
        round trip off every batch's path), one commit at a time, in order. A commit lost
        to a crash only means records delivered again, which every handler drops."""
        if not offsets:
            return
        await self._waiting("commit", self._committed())
        self._committing = asyncio.create_task(self._commit_now(consumer, offsets))

    async def _committed(self) -> None:
        pending, self._committing = self._committing, None
        if pending is not None:
            await pending

    async def _commit_now(
        self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
    ) -> None:
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # Rebalanced away: the next owner re-reads from the last commit, and skips what
            # its log says was decided (or, for notify, inserts nothing twice).
            log.warning("kafka.commit_failed", offsets=str(offsets), error=repr(exc))

    async def _decode(self, record: ConsumerRecord[bytes, bytes]) -> Input | None:
        try:
            return Input(record, from_record(record.key, record.value, record.headers))
        except UnknownEventType as exc:
            # A newer producer's event (a .v2, a new type) during a rolling upgrade: not
            # this consumer's to judge. Skipped (and committed past), counted, said once.
            EVENTS_HANDLED.labels(record.topic, "unknown_type").inc()
            if exc.event_type not in self._unknown_types:
                self._unknown_types.add(exc.event_type)
                log.warning("kafka.unknown_event_type", topic=record.topic, type=exc.event_type)
            return None
        except UndecodableRecord as exc:
            await dead_letter(self._publisher, record, str(exc), attempts=0, group=self.group_id)
            EVENTS_HANDLED.labels(record.topic, "undecodable").inc()
            return None

    async def _together(self, inputs: list[Input]) -> None:
        assert self._batch is not None
        backoff = self._policy.first_backoff
        causes = [(item.event.correlation_id, item.event.id) for item in inputs]
        while True:
            try:
                with telemetry.continued(f"{self.group_id} handle", causes):
                    await self._batch(inputs)
            except ConnectionFailure as exc:
                log.warning("handler.database_unavailable", error=repr(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._policy.max_backoff)
                continue
            except Exception as exc:
                log.warning("handler.batch_failed", events=len(inputs), error=repr(exc))
                await self._one_by_one(inputs)
                return
            for item in inputs:
                EVENTS_HANDLED.labels(item.record.topic, "ok").inc()
            return

    async def _one_by_one(self, inputs: list[Input]) -> None:
        for item in inputs:
            event = item.event
            started = time.perf_counter()
            bind_contextvars(
                event_id=event.id, event_type=event.type, correlation_id=event.correlation_id
            )
            trace.begin(event.correlation_id)  # what it sends goes on with the same id
            try:
                with telemetry.continued(
                    f"{self.group_id} handle", [(event.correlation_id, event.id)]
                ):
                    await self._handle_with_retries(item.record, event)
            finally:
                unbind_contextvars("event_id", "event_type", "correlation_id")
                HANDLE_SECONDS.labels(item.record.topic).observe(time.perf_counter() - started)

    async def _handle_with_retries(
        self, record: ConsumerRecord[bytes, bytes], event: Event
    ) -> None:
        assert self._handler is not None
        policy = self._policy
        backoff = policy.first_backoff
        attempt = 0
        while True:
            try:
                await self._handler(event)
                EVENTS_HANDLED.labels(record.topic, "ok").inc()
                return
            except ConnectionFailure as exc:
                log.warning("handler.database_unavailable", error=repr(exc), retry_in=backoff)
            except Exception as exc:
                attempt += 1
                if attempt >= policy.attempts:
                    log.error("handler.gave_up", attempts=attempt, error=repr(exc))
                    await dead_letter(
                        self._publisher, record, repr(exc), attempts=attempt, group=self.group_id
                    )
                    EVENTS_HANDLED.labels(record.topic, "dead_lettered").inc()
                    return
                log.warning("handler.failed", attempt=attempt, error=repr(exc), retry_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, policy.max_backoff)


class ConsumerStalled(Exception):
    """A consumer client that stopped moving: it fetches nothing while records wait for
    it, or one of its waits on the broker never ends (see ``_check_stalled``, ``_waiting``)."""


class _Told(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells a partition listener how many partitions the topics really have, and counts
    the rebalances that made it let go."""

    def __init__(
        self, consumer: AIOKafkaConsumer, inner: PartitionListener, counted: EventConsumer
    ) -> None:
        self._consumer = consumer
        self._inner = inner
        self._counted = counted

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        counts = {len(self._consumer.partitions_for_topic(tp.topic) or ()) for tp in assigned}
        if counts:
            self._inner.partition_count = max(counts)
        await self._inner.on_partitions_assigned(assigned)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:  # the first join revokes nothing
            self._counted.revocations += 1
        await self._inner.on_partitions_revoked(revoked)


class KafkaProbe:
    """Answers 'does the broker answer a metadata request right now?' for /readyz."""

    def __init__(self, bootstrap: str, timeout: float = 2.0) -> None:
        self._bootstrap = bootstrap
        self._timeout = timeout
        self._client: AIOKafkaClient | None = None

    async def check(self) -> None:
        if self._client is None:
            client = AIOKafkaClient(
                bootstrap_servers=self._bootstrap, request_timeout_ms=int(self._timeout * 1000)
            )
            try:
                await within(self._timeout, client.bootstrap())
            except BaseException:
                await client.close()
                raise
            self._client = client
            return
        await within(self._timeout, self._client.fetch_all_metadata())

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def by_payload_type(table: dict[type[Any], Callable[[Event], Awaitable[None]]]) -> Handler:
    """One explicit table from payload class to handler; other event types are skipped
    (a consumer sees every event on its topics, and most are not its business)."""

    async def handle(event: Event) -> None:
        fn = table.get(type(event.data))
        if fn is not None:
            await fn(event)

    return handle
