"""The shared owner's pure parts: event positions, entry sizes, documents, and the clocks
that turn time into commands."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from aiokafka import ConsumerRecord
from bson.codec_options import CodecOptions

from services.dispatch.timer import run_offer_timer
from shared.contracts import campaigns as c
from shared.contracts import orders as o
from shared.events import Event
from shared.kafka import Input
from shared.owner import (
    ENTRY_WEIGHT,
    Documents,
    entry_event_id,
    entry_sized,
    packed,
    position,
    unpacked,
    weight_of,
)
from tests.unit.test_board import T0, board_with, facts


def test_an_event_stored_in_a_log_carries_its_producer_and_position() -> None:
    event_id = entry_event_id("orders", "datong", 12, 3)
    assert position(event_id) == ("orders", (12, 3))
    assert position("3f2a9c0e") is None  # a command's id has no position
    assert position("expire-ord_1-2") is None


def _input(payload: Any, offset: int) -> Input:
    record: Any = ConsumerRecord("t", 0, offset, 0, 0, b"", b"", None, 0, 0, [])
    return Input(record, Event(source="/t", community_id="c", data=payload))


def test_an_import_is_weighed_by_its_rows_so_no_entry_outgrows_a_document() -> None:
    address = o.Address(compound="D", building="1", unit="1", room="1")
    rows = [
        o.HouseholdInput(line=i, address=address, grid_id="g", phone="13900000000")
        for i in range(300)
    ]
    imports = [
        _input(o.RegisterHouseholds(command_id=f"c{i}", actor="s", households=rows), i)
        for i in range(4)
    ]
    chunks = entry_sized(imports)
    assert [len(c) for c in chunks] == [1, 1, 1, 1]
    small = [
        _input(o.ReviewOrder(command_id=f"r{i}", actor="s", order_id="o"), i) for i in range(1200)
    ]
    assert [len(c) for c in entry_sized(small)] == [ENTRY_WEIGHT, ENTRY_WEIGHT, 200]
    assert [i.record.offset for c in entry_sized(small) for i in c] == list(range(1200))
    # A walk's doors weigh too; a count that merely shares a name weighs one.
    door = c.Door(household_id="h", outcome=c.Outcome.answered)
    walk = c.RecordVisits(
        command_id="v", actor="li", campaign_id="x", volunteer_id="li", doors=[door] * 100
    )
    started = c.CampaignStarted(
        campaign_id="x", title="t", grid_ids=[], household_count=1500, walk_list_count=40
    )
    assert [weight_of(walk), weight_of(started)] == [100, 1]


def test_documents_remember_what_changed_once() -> None:
    docs = Documents("datong", {"orders": [{"_id": "o1", "status": "accepted"}]})
    docs.put("orders", {"_id": "o1", "status": "assigned"})
    changes = docs.take_changes()
    assert [(c.doc_id, c.doc["status"]) for c in changes if c.doc] == [("o1", "assigned")]
    assert changes[0].doc["community_id"] == "datong"  # type: ignore[index]
    assert docs.take_changes() == []


class FlakyPublisher:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.failures = 1

    async def publish(self, topic: str, event: Event) -> None:
        if self.failures:
            self.failures -= 1
            raise TimeoutError("broker away")
        self.sent.append(event.id)


async def test_a_lapsed_offer_whose_expiry_could_not_be_sent_is_sent_again() -> None:
    board = board_with(("v1", "g3", 1))
    board.order_open(facts("o1"), T0)
    board.escalate_after_seconds = 10**9  # not late, only its offer lapsed
    board.tasks["o1"].offer_expires_at = T0 - timedelta(seconds=1)
    owner: Any = SimpleNamespace(loaded={"datong": SimpleNamespace(state=board)})
    publisher = FlakyPublisher()
    task = asyncio.create_task(run_offer_timer(owner, publisher, tick_seconds=0.01))
    try:
        async with asyncio.timeout(2):
            while len(publisher.sent) < 1:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # more ticks: sent once it went, not again
    finally:
        task.cancel()
    (sent,) = publisher.sent
    assert sent.startswith("expire-o1-1-")


def test_an_entry_is_stored_with_its_decision_packed_and_unpacks_to_what_was_decided() -> None:
    codec = CodecOptions(tz_aware=True, tzinfo=UTC)
    at = datetime(2026, 5, 1, 8, 30, 15, 123000, tzinfo=UTC)
    entry = {
        "_id": "datong:7",
        "community_id": "datong",
        "n": 7,
        "at": at,
        "inputs": ["in-1"],
        "offsets": [{"topic": "orders.commands", "partition": 3, "next": 12}],
        "changes": [{"collection": "orders", "_id": "o1", "doc": {"placed_at": at}, "new": True}],
        "outcomes": {"c1": {"status": 201, "body": {"order_id": "o1"}}},
    }
    stored = packed(entry)
    assert set(stored) == {"_id", "community_id", "n", "at", "decision"}  # all one can query
    assert unpacked(stored, codec) == entry
    before = dict(entry)  # stored before decisions were packed
    assert unpacked(before, codec) == entry


async def test_a_reopened_order_has_its_timers_again() -> None:
    # Offer 1 lapses; the order is later re-opened and offered again as attempt 1: its
    # expiry is a command of its own, sent though the first life's was sent before.
    board = board_with(("v1", "g3", 1))
    board.order_open(facts("o1"), T0)
    board.escalate_after_seconds = 10**9
    board.tasks["o1"].offer_expires_at = T0 - timedelta(seconds=1)
    owner: Any = SimpleNamespace(loaded={"datong": SimpleNamespace(state=board)})
    publisher = FlakyPublisher()
    publisher.failures = 0
    task = asyncio.create_task(run_offer_timer(owner, publisher, tick_seconds=0.01))
    try:
        async with asyncio.timeout(2):
            while len(publisher.sent) < 1:
                await asyncio.sleep(0.01)
            # The owner decides the expiry; the order fails later and is re-opened.
            board.expire("o1", "v1", 1, T0)
            board.cancel("o1", "staff", T0)
            board.order_open(facts("o1"), T0 + timedelta(minutes=30))
            board.tasks["o1"].offer_expires_at = T0 + timedelta(minutes=31)
            assert board.tasks["o1"].attempt == 1
            while len(publisher.sent) < 2:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    first, second = publisher.sent
    assert first != second and first.startswith("expire-o1-1") and second.startswith("expire-o1-1")


async def test_a_read_of_the_live_state_waits_for_the_decision_being_stored() -> None:
    from shared.owner import CommunityLog

    class Collections(dict[str, Any]):
        def __missing__(self, name: str) -> object:
            return object()

    rules: Any = SimpleNamespace(table=lambda: {}, service="t")
    owner: Any = CommunityLog(Collections(), None, rules, partitions=1, group_id="g")  # type: ignore[arg-type]
    state = Documents("datong", {})
    owner.loaded["datong"] = SimpleNamespace(state=state)
    lock = owner._lock("datong")
    await lock.acquire()  # a decision is being made and stored
    state.put("orders", {"_id": "o1", "status": "half-made"})
    read = asyncio.create_task(owner.settled("datong"))
    await asyncio.sleep(0.05)
    assert not read.done()  # nobody sees what may yet fail to be stored
    owner.forget("datong")  # the store failed: the state is forgotten
    lock.release()
    assert await read is None  # the read goes to the database instead


async def test_a_bug_in_the_owners_own_plumbing_parks_its_community_not_the_partition() -> None:
    from shared.owner import CommunityLog

    class Collections(dict[str, Any]):
        def __missing__(self, name: str) -> object:
            return object()

    rules: Any = SimpleNamespace(table=lambda: {}, service="t")
    owner: Any = CommunityLog(Collections(), None, rules, partitions=1, group_id="g")  # type: ignore[arg-type]
    stored: list[str] = []

    async def decide_and_store(community_id: str, items: Any, settled: Any) -> None:
        if community_id == "a":
            raise KeyError("a bug in deriving, not in the rules")
        stored.append(community_id)

    owner._decide_and_store = decide_and_store
    review = o.ReviewOrder(command_id="r", actor="s", order_id="o")
    record: Any = ConsumerRecord("t", 0, 0, 0, 0, b"", b"", None, 0, 0, [])
    later: Any = ConsumerRecord("t", 0, 1, 0, 0, b"", b"", None, 0, 0, [])
    batch = [
        Input(record, Event(source="/t", community_id="a", data=review)),
        Input(later, Event(source="/t", community_id="b", data=review)),
    ]
    await owner.handle(batch)  # no exception: the partition goes on
    assert stored == ["b"] and "a" in owner._lanes
    assert owner.held_offsets() == {"t/0": 0}  # a's record is not committed past
    owner._lanes["a"].task.cancel()
