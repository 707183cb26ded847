"""Where the real Kafka broker and MongoDB-protocol server come from, in this order:

1. ``DOORSTEP_TEST_KAFKA_BOOTSTRAP`` and ``DOORSTEP_TEST_MONGO_URL``: an externally run stack;
2. a reachable Docker engine: testcontainers (Kafka KRaft and mongo:7);
3. otherwise the local stack: Kafka from Maven jars and FerretDB built with Go, on free
   ports in a temporary directory, stopped at the end of the session.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from shared.keys import SigningKey, jwks


@dataclass(frozen=True)
class Stack:
    kafka_bootstrap: str
    mongo_url: str
    origin: str


class BrokerControl(Protocol):
    bootstrap: str

    def stop(self) -> None: ...
    def start(self) -> None: ...


def docker_reachable() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    kafka_env = os.environ.get("DOORSTEP_TEST_KAFKA_BOOTSTRAP")
    mongo_env = os.environ.get("DOORSTEP_TEST_MONGO_URL")
    if kafka_env and mongo_env:
        yield Stack(kafka_env, mongo_env, "environment")
        return
    if docker_reachable():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with ExitStack() as es:
            kafka = es.enter_context(KafkaContainer().with_kraft())
            mongo = es.enter_context(MongoDbContainer("mongo:7.0"))
            yield Stack(kafka.get_bootstrap_server(), mongo.get_connection_url(), "testcontainers")
        return
    from doorstep_cli.localstack import running_stack

    with running_stack(tmp_path_factory.mktemp("stack")) as (nodes, ferret):
        yield Stack(nodes[0].bootstrap, ferret.url, "local")


class _PausedContainer:
    """Docker variant of a stoppable broker: pausing keeps the mapped port."""

    def __init__(self, container: object, bootstrap: str) -> None:
        self._c = container
        self.bootstrap = bootstrap

    def stop(self) -> None:
        self._c.get_wrapped_container().pause()  # type: ignore[attr-defined]

    def start(self) -> None:
        self._c.get_wrapped_container().unpause()  # type: ignore[attr-defined]


@pytest.fixture()
def own_broker(tmp_path: Path) -> Iterator[BrokerControl]:
    """A broker of the test's own, which it may stop and start again."""
    if docker_reachable():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield _PausedContainer(kafka, kafka.get_bootstrap_server())
        return
    from doorstep_cli.localstack import KafkaNode

    node = KafkaNode(tmp_path / "kafka", log_file=tmp_path / "kafka.log")
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture()
def unique() -> str:
    return uuid.uuid4().hex[:10]


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Everything on the topic so far, in partition order."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.assignment()
        while not partitions:
            await asyncio.sleep(0.05)
            partitions = consumer.assignment()
        end = await consumer.end_offsets(list(partitions))
        records: list[ConsumerRecord[bytes, bytes]] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


@contextmanager
def jwks_served(*keys: SigningKey) -> Iterator[str]:
    """A real HTTP server publishing ``keys`` as a JWKS (as identity does), for services
    started in-process by a test: they fetch it as they would identity's."""
    body = json.dumps(jwks(keys)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
