"""The clients and background work one service instance runs, opened in its lifespan.

Every service builds one ``ServiceRuntime`` in its composition root (``app.py``), registers
its consumers and background loops, and enters it in the FastAPI lifespan. Start-up never
waits for Kafka: topics, the producer and consumers come up in the background, retrying,
while /readyz says what is still missing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared import mongo
from shared.commands import OutcomeBoard, listen_for_outcomes
from shared.decision import State
from shared.http import UNAVAILABLE, ReadinessCheck
from shared.kafka import (
    BatchHandler,
    ConsumerStalled,
    EventConsumer,
    EventPublisher,
    Handler,
    KafkaProbe,
    PartitionListener,
    RetryPolicy,
    ensure_topics,
    retry_forever,
)
from shared.keys import KeyRing
from shared.log import STARTING, get_logger
from shared.owner import CommunityLog, Rules
from shared.settings import ServiceSettings
from shared.topics import ALL as ALL_TOPICS

log = get_logger(__name__)

S = TypeVar("S", bound=State)
Loop = Callable[[], Awaitable[None]]
SHUTDOWN_SECONDS = 5.0


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        service: str,
        database: str,
        *,
        keys: KeyRing | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.client: AsyncMongoClient[dict[str, Any]] = mongo.connect(settings.mongo_url, service)
        self.db: AsyncDatabase[dict[str, Any]] = self.client[database]
        self.publisher = EventPublisher(settings.kafka_bootstrap, client_id=service)
        self.probe = KafkaProbe(settings.kafka_bootstrap)
        self.consumers: list[EventConsumer] = []
        self.owners: list[CommunityLog[Any]] = []
        self._loops: list[tuple[str, Loop]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.topics_ready = asyncio.Event()
        # The public keys bearer tokens are checked with: the issuer's JWKS, kept fresh
        # (the identity service passes its own keys instead).
        self.keys = keys or KeyRing(settings.jwks_url, refresh_every=settings.jwks_refresh_seconds)
        if keys is None:
            self.loop("keys", self.keys.keep_fresh)

    @property
    def readiness(self) -> dict[str, ReadinessCheck]:
        async def mongo_ping() -> None:
            await mongo.ping(self.db)

        async def consuming() -> None:
            stopped = [c.group_id for c in self.consumers if not c.running.is_set()]
            if stopped:
                raise RuntimeError(f"consumer not running: {', '.join(stopped)}")

        return {
            "mongo": mongo_ping,
            "kafka": self.probe.check,
            "consumers": consuming,
            "keys": self.keys.check,
        }

    def stuck(self) -> dict[str, str]:
        """Communities this instance's owners hold back, and why (not an outage)."""
        return {c: why for owner in self.owners for c, why in owner.stuck.items()}

    def consume(
        self,
        group_id: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        batch_handler: BatchHandler | None = None,
        listener: PartitionListener | None = None,
        policy: RetryPolicy | None = None,
    ) -> EventConsumer:
        consumer = EventConsumer(
            bootstrap=self.settings.kafka_bootstrap,
            group_id=group_id,
            topics=topics,
            handler=handler,
            batch_handler=batch_handler,
            publisher=self.publisher,
            listener=listener,
            policy=policy,
        )
        self.consumers.append(consumer)
        return consumer

    def own(
        self, rules: Rules[S], topics: Sequence[str], pace_seconds: float = 0.0
    ) -> CommunityLog[S]:
        """This service decides the communities on its partitions of ``topics`` with
        ``rules``, storing every decision as one log entry (``shared.owner``); a view
        reads at most every ``pace_seconds`` (``EventConsumer``)."""
        owner = CommunityLog(
            self.db,
            self.publisher,
            rules,
            partitions=self.settings.topic_partitions,
            group_id=self.service,
            outcomes=OutcomeBoard(self.db, self.publisher),
        )
        self.owners.append(owner)

        async def listen() -> None:
            await self.topics_ready.wait()
            await listen_for_outcomes(self.settings.kafka_bootstrap)

        self.loop("outcomes", listen)
        self.loop("log-indexes", owner.ensure_indexes)
        self.loop("tombstones", owner.keep_pruning)
        self.consumers.append(
            EventConsumer(
                bootstrap=self.settings.kafka_bootstrap,
                group_id=self.service,
                topics=topics,
                batch_handler=owner.handle,
                publisher=self.publisher,
                listener=owner,
                pace_seconds=pace_seconds,
            )
        )
        return owner

    def loop(self, name: str, body: Loop) -> None:
        """Run ``body`` in the background for the life of the service, restarting it if it
        fails (a relay or timer must outlive a database blip)."""
        self._loops.append((name, body))

    async def __aenter__(self) -> ServiceRuntime:
        self._tasks.append(asyncio.create_task(self._start_kafka(), name="kafka-start"))
        for name, body in self._loops:
            self._tasks.append(asyncio.create_task(supervise(name, body), name=name))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Bounded: a service told to stop must stop, even with the broker or database gone.
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=SHUTDOWN_SECONDS)
        for closing in (self.publisher.stop(), self.probe.close(), self.client.close()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closing, SHUTDOWN_SECONDS)

    async def _start_kafka(self) -> None:
        log.info("runtime.waiting_for_broker", bootstrap=self.settings.kafka_bootstrap)
        await retry_forever(
            "create topics",
            lambda: ensure_topics(
                self.settings.kafka_bootstrap,
                ALL_TOPICS,
                self.settings.topic_partitions,
                self.settings.topic_replication,
            ),
        )
        self.topics_ready.set()
        await self.publisher.start()
        for consumer in self.consumers:
            self._tasks.append(
                asyncio.create_task(
                    supervise(f"consumer:{consumer.group_id}", consumer.run),
                    name=consumer.group_id,
                )
            )
        # The start-up's expected warnings held back until every consumer runs (or a
        # minute passed: then something is wrong, and the warnings say what).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                for consumer in self.consumers:
                    await consumer.running.wait()
        STARTING.started()
        log.info("runtime.broker_ready", consumers=len(self.consumers))


async def supervise(name: str, body: Loop) -> None:
    """Run ``body`` until it returns, starting it again a second after it fails: a relay,
    a timer or a consumer must outlive a database blip or a broker outage."""
    while True:
        try:
            await body()
            return
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is None or current.cancelling():
                raise  # told to stop
            # A cancellation from inside the body is a crash, not a stop (aiokafka's client
            # close can end that way): restarted like any other, or the task is gone for good.
            log.error("background.cancelled_inside", task=name, restart_in=1.0)
            await asyncio.sleep(1.0)
        except UNAVAILABLE as exc:  # waited out, not a crash
            log.warning("background.unavailable", task=name, error=repr(exc), restart_in=1.0)
            await asyncio.sleep(1.0)
        except ConsumerStalled:  # logged where it was found; a fresh client now
            await asyncio.sleep(1.0)
        except Exception:
            log.exception("background.crashed", task=name, restart_in=1.0)
            await asyncio.sleep(1.0)
