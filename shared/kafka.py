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
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from prometheus_client import Counter, Histogram
from pymongo.errors import ConnectionFailure

from shared.events import Event, UndecodableRecord, from_record, to_record
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


async def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int) -> None:
    """Create each topic and its DLQ if missing. Idempotent; safe from many instances."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for topic in topics for t in (topic, dlq(topic))]
        missing = [
            NewTopic(t, num_partitions=partitions, replication_factor=1)
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
    """Idempotent producer: acks from all in-sync replicas, no duplicates on retry."""

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",  # aiokafka's default is acks=1
            enable_idempotence=True,  # aiokafka's default is False
            linger_ms=2,
        )
        self._started = asyncio.Event()

    async def start(self) -> None:
        await retry_forever("producer start", self._producer.start)
        self._started.set()

    async def stop(self) -> None:
        if self._started.is_set():
            await self._producer.stop()

    async def publish(self, topic: str, event: Event) -> None:
        await self._started.wait()
        record = to_record(event)
        await self._producer.send_and_wait(
            topic, record.value, key=record.key, headers=record.headers
        )
        EVENTS_PUBLISHED.labels(topic, event.type).inc()

    async def publish_many(self, topic: str, events: list[Event]) -> None:
        """Publish in order, waiting once for all acknowledgements."""
        await self._started.wait()
        pending = []
        for event in events:
            record = to_record(event)
            pending.append(
                await self._producer.send(
                    topic, record.value, key=record.key, headers=record.headers
                )
            )
        await asyncio.gather(*pending)
        for event in events:
            EVENTS_PUBLISHED.labels(topic, event.type).inc()

    async def publish_raw(
        self, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        await self._started.wait()
        await self._producer.send_and_wait(topic, value, key=key, headers=headers)


class PartitionListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hooks for a consumer whose owner keeps per-partition state (dispatch)."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None: ...

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None: ...


@dataclass
class RetryPolicy:
    attempts: int = 5
    first_backoff: float = 0.1
    max_backoff: float = 2.0


class EventConsumer:
    """Consumes CloudEvents and hands each to ``handler``; commits only what was handled.

    Error policy, per record:
    - cannot be parsed (bad JSON, unknown type, missing attributes) → its topic's DLQ at once;
    - the handler raises → retried with backoff, up to ``policy.attempts`` times, then DLQ;
    - the database is unreachable → retried until it is back (never dead-lettered: the
      record is fine, the world is not).
    The DLQ copy keeps the original key, value and headers, plus ``dlq_*`` headers with the
    error and the origin (topic, partition, offset, consumer group).
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        handler: Handler,
        publisher: EventPublisher,
        policy: RetryPolicy | None = None,
        listener: PartitionListener | None = None,
        client_id: str | None = None,
    ) -> None:
        self.group_id = group_id
        self.topics = list(topics)
        self._handler = handler
        self._publisher = publisher
        self._policy = policy or RetryPolicy()
        self._listener = listener
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            client_id=client_id or group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Same partition number of every topic on one instance: one writer per community.
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=200,
        )
        self.running = asyncio.Event()

    async def run(self) -> None:
        """Consume until cancelled."""

        async def start() -> None:
            self._consumer.subscribe(self.topics, listener=self._listener)
            await self._consumer.start()

        await retry_forever(f"consumer {self.group_id} start", start)
        self.running.set()
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for record in records:
                        await self._handle(record)
                        # Commit after each handled record: a crash re-delivers at most it.
                        await self._commit(tp, record.offset + 1)
        finally:
            self.running.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), 5)

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            await self._consumer.commit({tp: offset})
        except KafkaError as exc:
            # Rebalanced away: the next owner re-reads from the last commit; handlers are
            # idempotent by event id, so the re-delivery is harmless.
            log.warning("kafka.commit_failed", tp=str(tp), offset=offset, error=repr(exc))

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        started = time.perf_counter()
        try:
            event = from_record(record.key, record.value, record.headers)
        except UndecodableRecord as exc:
            await self._dead_letter(record, str(exc), attempts=0)
            EVENTS_HANDLED.labels(record.topic, "undecodable").inc()
            return
        bind_contextvars(
            event_id=event.id, event_type=event.type, correlation_id=event.correlation_id
        )
        try:
            await self._handle_with_retries(record, event)
        finally:
            unbind_contextvars("event_id", "event_type", "correlation_id")
            HANDLE_SECONDS.labels(record.topic).observe(time.perf_counter() - started)

    async def _handle_with_retries(
        self, record: ConsumerRecord[bytes, bytes], event: Event
    ) -> None:
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
                    await self._dead_letter(record, repr(exc), attempts=attempt)
                    EVENTS_HANDLED.labels(record.topic, "dead_lettered").inc()
                    return
                log.warning("handler.failed", attempt=attempt, error=repr(exc), retry_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, policy.max_backoff)

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: str, attempts: int
    ) -> None:
        headers = [
            *(record.headers or ()),
            ("dlq_error", error[:2000].encode()),
            ("dlq_topic", record.topic.encode()),
            ("dlq_partition", str(record.partition).encode()),
            ("dlq_offset", str(record.offset).encode()),
            ("dlq_group", self.group_id.encode()),
            ("dlq_attempts", str(attempts).encode()),
        ]
        log.error("kafka.dead_lettered", topic=record.topic, offset=record.offset, error=error)
        await self._publisher.publish_raw(dlq(record.topic), record.value, record.key, headers)


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
                await asyncio.wait_for(client.bootstrap(), self._timeout)
            except BaseException:
                await client.close()
                raise
            self._client = client
            return
        await asyncio.wait_for(self._client.fetch_all_metadata(), self._timeout)

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
