"""Three brokers from the same jars (KRaft, each broker and controller): topics replicated
three times, a write acknowledged once two copies have it. One broker killed for good under
a stream of events, then a second one stopped for a while (below min.insync.replicas the
producer waits): every event acknowledged is read back."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from doorstep_cli.localstack import KafkaCluster
from shared.kafka import EventPublisher, ensure_topics
from shared.topics import dlq
from tests.integration.test_kafka_events import read_all, shift_event


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    brokers = KafkaCluster(tmp_path / "kafka", log_dir=tmp_path)
    brokers.start()
    try:
        yield brokers
    finally:
        for node in brokers.nodes:  # killed, not stopped: a graceful stop of a cluster
            if node.proc is not None:  # that lost a broker waits ~20 s for nothing
                node.proc.kill()
                node.proc.wait()


async def test_nothing_acknowledged_is_lost_when_a_broker_dies_for_good_and_another_pauses(
    cluster: KafkaCluster,
) -> None:
    topic = "t.replicated"
    await ensure_topics(cluster.bootstrap, [topic], partitions=3, replication=3)
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        assert {len(p["replicas"]) for p in described["partitions"]} == {3}
        assert dlq(topic) in await admin.list_topics()
    finally:
        await admin.close()

    publisher = EventPublisher(cluster.bootstrap, "tests")
    await publisher.start()
    sent = []
    try:
        first = [shift_event(f"c{i % 5}", i) for i in range(60)]
        await publisher.publish_many(topic, first)
        sent += first
        dead = cluster.nodes[0]
        assert dead.proc is not None
        dead.proc.kill()  # kill -9, never started again
        dead.proc.wait()
        second = [shift_event(f"c{i % 5}", i) for i in range(60, 120)]
        await asyncio.wait_for(publisher.publish_many(topic, second), 90)
        sent += second

        # Down to one live copy: below min.insync.replicas, a write waits (it is not
        # acknowledged on one copy) and goes through once the second broker is back.
        paused = cluster.nodes[1]
        assert paused.proc is not None
        os.kill(paused.proc.pid, signal.SIGSTOP)
        third = [shift_event(f"c{i % 5}", i) for i in range(120, 150)]
        waiting = asyncio.create_task(publisher.publish_many(topic, third))
        await asyncio.sleep(8)
        assert not waiting.done()  # acknowledged by one copy: never
        os.kill(paused.proc.pid, signal.SIGCONT)
        await asyncio.wait_for(waiting, 120)
        sent += third
    finally:
        await publisher.stop()

    read = await read_all(cluster.bootstrap, topic, len(sent), timeout=60)
    ids = [dict(r.headers)["ce_id"].decode() for r in read]
    assert sorted(set(ids)) == sorted(e.id for e in sent)
