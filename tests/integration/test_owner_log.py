"""The shared write path against the real database and broker, with the volunteers' real
rules: every decision is one insert; re-delivered inputs are skipped by their offsets; a
crash after the insert is redone on load; a stale owner loses the race and reloads; an
input the rules cannot decide is dead-lettered and its command refused; replaying the log
into a fresh owner gives the same state."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure

from services.dispatch.handlers import DispatchRules
from services.volunteers.handlers import VolunteersRules
from shared.commands import CommandSender, OutcomeBoard
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.events import Event, from_record
from shared.kafka import EventPublisher, Input, ensure_topics
from shared.owner import (
    LOG,
    CommunityLog,
    Decide,
    Decision,
    Documents,
    entry_event_id,
    unpacked,
)
from shared.topics import ALL, OUTCOMES, VOLUNTEERS_COMMANDS, VOLUNTEERS_EVENTS, dlq
from tests.conftest import Stack, read_topic

COMMUNITY = "datong"


def record(offset: int, topic: str = VOLUNTEERS_COMMANDS, partition: int = 0) -> Any:
    return ConsumerRecord(topic, partition, offset, 0, 0, b"", b"{}", None, 0, 0, [("ce_id", b"x")])


def inputs(*payloads: Any, first_offset: int = 0, community: str = COMMUNITY) -> list[Input]:
    return [
        Input(
            record(first_offset + i),
            Event(id=f"in-{first_offset + i}", source="/tests", community_id=community, data=p),
        )
        for i, p in enumerate(payloads)
    ]


def community_defined(community: str) -> o.CommunityDefined:
    grids = [o.Grid(grid_id="g1", name="G1", grid_worker="Wang", grid_worker_phone="13800000001")]
    return o.CommunityDefined(
        community_id=community,
        name=community,
        grids=grids,
        policy=o.CommunityPolicy(auto_approve_volunteers=True),
    )


def registration(vid: str) -> v.RegisterVolunteer:
    return v.RegisterVolunteer(
        command_id=f"cmd-{vid}",
        actor="tests",
        volunteer_id=vid,
        name=vid,
        phone="13700000001",
        compound="Datong Garden",
        home_grid_id="g1",
        work_unit="bureau",
        skills=[v.Skill.delivery],
        capacity=2,
    )


def check_in(vid: str, command_id: str | None = None) -> v.CheckIn:
    until = datetime.now(UTC) + timedelta(hours=2)
    return v.CheckIn(
        command_id=command_id or f"in-{vid}",
        actor="tests",
        volunteer_id=vid,
        grid_id="g1",
        until=until,
    )


@pytest.fixture()
async def db(stack: Stack) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    yield client[f"log_{uuid.uuid4().hex[:8]}"]
    await client.close()


@pytest.fixture()
async def publisher(stack: Stack) -> AsyncIterator[EventPublisher]:
    await ensure_topics(stack.kafka_bootstrap, ALL, 4)
    publisher = EventPublisher(stack.kafka_bootstrap, "tests")
    await publisher.start()
    yield publisher
    await publisher.stop()


def owner(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher, rules: Any = None
) -> CommunityLog[Documents]:
    return CommunityLog(
        db,
        publisher,
        rules or VolunteersRules(),
        partitions=4,
        group_id="tests",
        outcomes=OutcomeBoard(db, publisher),
    )


async def published(stack: Stack, community: str) -> list[Event]:
    records = await read_topic(stack.kafka_bootstrap, VOLUNTEERS_EVENTS)
    events = [from_record(r.key, r.value, r.headers) for r in records]
    return [e for e in events if e.community_id == community]


async def test_a_batch_of_inputs_is_one_entry_and_a_redelivery_of_it_changes_nothing(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    batch = inputs(community_defined(COMMUNITY), *(registration(f"v{i}") for i in range(300)))
    log = owner(db, publisher)
    await log.handle(batch)
    assert await db[LOG].count_documents({}) == 1
    assert await db["volunteers"].count_documents({}) == 300

    # Re-delivered (more than any window of remembered ids) to this owner and to a fresh
    # one: the stored offsets say they were decided.
    await log.handle(batch)
    await owner(db, publisher).handle(batch)
    assert await db[LOG].count_documents({}) == 1
    assert (await db["command_results"].find_one({"_id": "cmd-v7"}))["outcome"]["status"] == 201


class Crash(BaseException):
    """Stands for the process dying at this point (not an error the owner could catch)."""


class CrashAfterInsert(EventPublisher):
    async def publish_many(self, topic: str, events: list[Event]) -> None:
        raise Crash


class CrashAfterPublish(EventPublisher):
    """Publishes the entry's events, then dies before the outcomes go out."""

    async def publish_raw_many(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        raise Crash


@pytest.mark.parametrize("crashing", [CrashAfterInsert, CrashAfterPublish])
async def test_a_crash_in_the_write_path_loses_nothing_the_next_owner_publishes_and_answers(
    stack: Stack,
    db: AsyncDatabase[dict[str, Any]],
    publisher: EventPublisher,
    unique: str,
    crashing: type[EventPublisher],
) -> None:
    community = f"c{unique}"
    dying = crashing(stack.kafka_bootstrap, f"crashing-{unique}")
    await dying.start()
    batch = inputs(community_defined(community), registration("v1"), community=community)
    try:
        with pytest.raises(Crash):
            await owner(db, dying).handle(batch)
    finally:
        await dying.stop()
    assert await db[LOG].count_documents({"community_id": community}) == 1  # stored

    # The records were not committed: the next owner gets them again, decides nothing
    # twice, and sends and answers what the first could not.
    await owner(db, publisher).handle(batch)
    assert await db[LOG].count_documents({"community_id": community}) == 1
    # Its new documents were inserted the first time, and are replaced, not doubled or
    # refused, when the entry is derived again.
    volunteers = await db["volunteers"].find({"community_id": community}).to_list()
    assert [d["_id"] for d in volunteers] == [f"{community}:v1"]  # keyed per community
    answer = await db["command_results"].find_one({"_id": "cmd-v1"})
    assert answer is not None and answer["outcome"]["status"] == 201
    events = await published(stack, community)
    assert {e.type for e in events} == {"doorstep.volunteer.approved.v1"}
    # After the publish, a second copy went out with the same id: consumers drop it.
    assert len({e.id for e in events}) == 1


async def test_a_stale_owner_loses_the_race_for_the_next_entry_and_decides_on_the_stored_state(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    stale, current = owner(db, publisher), owner(db, publisher)
    await stale.handle(inputs(community_defined(COMMUNITY), registration("v1")))
    await current.handle(inputs(check_in("v1"), first_offset=2))  # entry 2, unknown to stale

    # The stale owner's second check-in fails the fence, reloads, and is refused: v1 is on
    # duty in the stored state, whatever its memory said.
    await stale.handle(inputs(check_in("v1", "in-v1-again"), first_offset=3))
    assert await db[LOG].count_documents({}) == 3
    refusal = (await db["command_results"].find_one({"_id": "in-v1"}))["outcome"]
    assert refusal["status"] == 200  # the first check-in's answer is kept
    third = unpacked(await db[LOG].find_one({"_id": f"{COMMUNITY}:3"}), db.codec_options)
    assert [o["status"] for o in third["outcomes"].values()] == [409]


class BrokenCheckIn(VolunteersRules):
    def table(self) -> Mapping[type[Any], Decide[Documents]]:
        def broken(state: Documents, event: Event, now: datetime) -> Decision:
            raise KeyError("shift")

        return {**super().table(), v.CheckIn: broken}


async def test_an_input_the_rules_cannot_decide_is_dead_lettered_and_its_command_refused(
    stack: Stack, db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher, unique: str
) -> None:
    community = f"c{unique}"
    batch = inputs(
        community_defined(community),
        check_in("v1"),
        registration("v2"),
        community=community,
    )
    await owner(db, publisher, BrokenCheckIn()).handle(batch)

    assert (await db["command_results"].find_one({"_id": "in-v1"}))["outcome"]["status"] == 422
    assert (await db["command_results"].find_one({"_id": "cmd-v2"}))["outcome"]["status"] == 201
    dead = await read_topic(stack.kafka_bootstrap, dlq(VOLUNTEERS_COMMANDS))
    assert any(dict(r.headers).get("dlq_error", b"").startswith(b"KeyError") for r in dead), (
        "the broken input was dead-lettered"
    )


async def test_replaying_the_log_into_a_fresh_owner_gives_the_same_state(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    log = owner(db, publisher)
    await log.handle(inputs(community_defined(COMMUNITY), registration("v1"), registration("v2")))
    await log.handle(inputs(check_in("v1"), first_offset=3))
    await log.handle(inputs(check_in("v2"), first_offset=4))
    before = sorted([d async for d in db["volunteers"].find({})], key=lambda d: str(d["_id"]))

    # Read models and heads lost: the log alone rebuilds them.
    for kind in ("volunteers", "communities", "heads"):
        await db[kind].drop()
    fresh = owner(db, publisher)
    state = (await fresh.load(COMMUNITY)).state
    after = sorted([d async for d in db["volunteers"].find({})], key=lambda d: str(d["_id"]))
    assert after == before
    assert sorted(d["_id"] for d in state.values("volunteers")) == ["v1", "v2"]


async def test_an_owner_whose_partition_moved_away_decides_nothing(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    log = owner(db, publisher)
    await log.on_partitions_revoked(set())
    await asyncio.wait_for(log.handle(inputs(community_defined(COMMUNITY))), 5)
    assert await db[LOG].count_documents({}) == 0


async def test_a_re_published_copy_of_an_event_is_dropped_by_its_position(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    """Copies come from a producer's load (its last entries' events go out again): a
    ShiftStarted copy arriving after the ShiftEnded must not put the cadre back on duty."""
    until = datetime.now(UTC) + timedelta(hours=2)
    approved = v.VolunteerApproved(
        volunteer_id="v1", name="Li", phone="137", home_grid_id="g1", skills=[], capacity=2
    )
    started = v.ShiftStarted(volunteer_id="v1", shift_id="s1", grid_id="g1", until=until)
    ended = v.ShiftEnded(volunteer_id="v1", shift_id="s1", reason="checked_out")

    def fact(payload: Any, n: int, offset: int) -> Input:
        event_id = entry_event_id("volunteers", COMMUNITY, n, 0)
        event = Event(id=event_id, source="/volunteers", community_id=COMMUNITY, data=payload)
        return Input(record(offset, VOLUNTEERS_EVENTS), event)

    dispatch = owner(db, publisher, DispatchRules(120, 600))
    await dispatch.handle([fact(approved, 1, 0), fact(started, 2, 1), fact(ended, 3, 2)])
    await dispatch.handle([fact(started, 2, 3)])  # the copy, at a later offset
    board = (await dispatch.load(COMMUNITY)).state
    assert board.volunteers["v1"].shift_grid_id is None


class AwayFor:
    """The log collection, away (ConnectionFailure) for the communities in ``failing``."""

    def __init__(self, real: Any, *failing: str) -> None:
        self.real = real
        self.failing = set(failing)

    async def insert_one(self, doc: dict[str, Any]) -> Any:
        if doc["community_id"] in self.failing:
            raise ConnectionFailure("the database is away for this one")
        return await self.real.insert_one(doc)

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self.real.find_one(*args, **kwargs)


async def test_a_community_that_cannot_be_stored_waits_in_its_lane_and_holds_no_other_back(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    log = owner(db, publisher)
    away = AwayFor(db[LOG], "stuck")
    log.entries = away  # type: ignore[assignment]
    await log.handle(
        inputs(community_defined("stuck"), community="stuck")
        + inputs(community_defined("free"), community="free", first_offset=1)
    )
    assert await db[LOG].find_one({"_id": "free:1"}) is not None
    # The consumer commits nothing past the first input still waiting.
    assert log.held_offsets() == {f"{VOLUNTEERS_COMMANDS}/0": 0}

    # Later batches: the free community is decided at once, the stuck one queues in order.
    await log.handle(
        inputs(registration("v1"), community="stuck", first_offset=2)
        + inputs(registration("v2"), community="free", first_offset=3)
    )
    assert await db[LOG].find_one({"_id": "free:2"}) is not None
    assert await db[LOG].count_documents({"community_id": "stuck"}) == 0

    away.failing.clear()  # the database is back
    async with asyncio.timeout(20):
        while log.held_offsets():
            await asyncio.sleep(0.1)
    entries = await db[LOG].find({"community_id": "stuck"}).sort("n", 1).to_list()
    entries = [unpacked(e, db.codec_options) for e in entries]
    assert [i for e in entries for i in e["inputs"]] == ["in-0", "in-2"]  # in order
    assert await db["volunteers"].find_one({"_id": "stuck:v1"}) is not None


async def test_a_second_copy_of_an_answered_command_is_not_decided_again(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    # A producer that died after the broker took a command sends it again: a new record,
    # past the stored offsets, with the same command id.
    log = owner(db, publisher)
    await log.handle(inputs(community_defined(COMMUNITY), registration("v1")))
    await log.handle(inputs(registration("v1"), first_offset=2))
    await owner(db, publisher).handle(inputs(registration("v1"), first_offset=3))  # reloaded
    assert await db[LOG].count_documents({}) == 1
    outcome = (await db["command_results"].find_one({"_id": "cmd-v1"}))["outcome"]
    assert outcome["status"] == 201


async def test_an_outcome_taken_by_a_request_waiting_here_is_neither_stored_nor_published(
    stack: Stack, db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher, unique: str
) -> None:
    # One sender per command: the request answers with the outcome, nobody else waits for
    # it. An outcome nobody here waits for is stored and published (another instance's
    # request, or one that gave up waiting and answered 202).
    waited, unwaited = registration(f"a{unique}"), registration(f"b{unique}")
    sender = CommandSender(db, publisher, VOLUNTEERS_COMMANDS, "/tests")
    waiting = asyncio.ensure_future(sender.outcome(waited.command_id, wait_seconds=30))
    await asyncio.sleep(0)
    await owner(db, publisher).handle(inputs(community_defined(COMMUNITY), waited, unwaited))
    assert (await waiting).status == 201
    results = db["command_results"]
    assert await results.find_one({"_id": waited.command_id}) is None
    assert (await results.find_one({"_id": unwaited.command_id}))["outcome"]["status"] == 201
    told = {
        json.loads(r.value)["command_id"] for r in await read_topic(stack.kafka_bootstrap, OUTCOMES)
    }
    assert unwaited.command_id in told
    assert waited.command_id not in told


async def test_an_owner_that_lost_its_partition_cannot_regress_a_read_model(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    # Entries 1-3 stored and derived; then a stale owner (paused while the partition moved
    # and the new owner went on) derives entry 2 again: the volunteer stays as entry 3 left
    # them, on duty.
    current = owner(db, publisher)
    await current.handle(inputs(community_defined(COMMUNITY), registration("v1")))
    await current.handle(inputs(check_in("v1"), first_offset=2))
    await current.handle(inputs(check_in("v2-none", "x"), first_offset=3))
    after = await db["volunteers"].find_one({"_id": f"{COMMUNITY}:v1"})
    assert after is not None and after.get("shift") is not None
    first = unpacked(await db[LOG].find_one({"_id": f"{COMMUNITY}:1"}), db.codec_options)
    stale = owner(db, publisher)
    await stale._derive(first)  # the registration's version: no shift
    now = await db["volunteers"].find_one({"_id": f"{COMMUNITY}:v1"})
    assert now is not None and now.get("shift") is not None


class RefusedReadModel(VolunteersRules):
    """Rules whose check-in writes a document the database refuses (a field name no
    database takes): a bug in a read model, found in production."""

    def table(self) -> Mapping[type[Any], Decide[Documents]]:
        def refused(state: Documents, event: Event, now: datetime) -> Decision:
            state.put("volunteers", {"_id": "odd", "$where": "no"})
            return Decision()

        return {**super().table(), v.CheckIn: refused}


async def test_a_read_model_the_database_refuses_stops_its_community_not_skipped(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    first = owner(db, publisher, RefusedReadModel())
    await first.handle(inputs(community_defined(COMMUNITY), registration("v1")))
    await first.handle(inputs(check_in("v1"), first_offset=2))
    # The entry is stored (the decision stands), its read model is not: the community
    # waits in its lane (its record held from the commit), it does not go on without it.
    assert await db[LOG].count_documents({"community_id": COMMUNITY}) == 2
    assert COMMUNITY in first._lanes and first.held_offsets()
    assert await db["volunteers"].find_one({"_id": f"{COMMUNITY}:odd"}) is None
    # Named, with why, for /readyz and an alert; the others are not held.
    assert list(first.stuck) == [COMMUNITY] and "volunteers" in first.stuck[COMMUNITY]
    for lane in first._lanes.values():
        assert lane.task is not None
        lane.task.cancel()


async def test_an_owner_that_lost_its_partition_cannot_bring_back_a_removed_document(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    # Entry n put a document, entry n+1 removed it (a delivered task leaves the board);
    # a stale owner derives entry n late. The document stays gone, and a load does not
    # find what is left of it.
    current = owner(db, publisher)
    await current.handle(inputs(community_defined(COMMUNITY), registration("v1")))
    n = (await db["heads"].find_one({"_id": COMMUNITY}) or {}).get("n") or 1
    base = {"community_id": COMMUNITY, "at": datetime.now(UTC), "events": [], "outcomes": {}}
    doc = {"_id": f"{COMMUNITY}:gone", "community_id": COMMUNITY, "volunteer_id": "gone"}
    put = {**base, "_id": f"{COMMUNITY}:{n + 1}", "n": n + 1}
    put["changes"] = [{"collection": "volunteers", "_id": doc["_id"], "doc": doc, "new": True}]
    removed = {**base, "_id": f"{COMMUNITY}:{n + 2}", "n": n + 2}
    removed["changes"] = [{"collection": "volunteers", "_id": doc["_id"], "doc": None}]
    await current._derive(put)
    await current._derive(removed)
    assert await db["volunteers"].find_one({"_id": doc["_id"], "volunteer_id": "gone"}) is None

    stale = owner(db, publisher)
    await stale._derive(put)

    assert await db["volunteers"].find_one({"_id": doc["_id"], "volunteer_id": "gone"}) is None
    loaded = await owner(db, publisher)._load(COMMUNITY)
    assert loaded.state.get("volunteers", "gone") is None
    assert loaded.state.get("volunteers", doc["_id"]) is None
    assert loaded.state.get("volunteers", "v1") is not None


async def test_tombstones_are_pruned_once_older_than_any_late_write_live_documents_stay(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    # A removed document leaves a tombstone stamped with its entry's time (a day's 10,000
    # finished tasks would otherwise stay for good); pruning takes only those older than
    # the cut-off, never a live document nor a younger tombstone.
    log = owner(db, publisher)
    await log.handle(inputs(community_defined(COMMUNITY), registration("v1")))
    base = {"community_id": COMMUNITY, "events": [], "outcomes": {}}
    week_ago = datetime.now(UTC) - timedelta(days=8)
    for n, (doc_id, at) in enumerate([("old", week_ago), ("young", datetime.now(UTC))], 50):
        doc = {"_id": f"{COMMUNITY}:{doc_id}", "community_id": COMMUNITY, "volunteer_id": doc_id}
        put = {**base, "_id": f"{COMMUNITY}:{n}", "n": n, "at": at}
        put["changes"] = [{"collection": "volunteers", "_id": doc["_id"], "doc": doc, "new": True}]
        gone = {**base, "_id": f"{COMMUNITY}:{n + 10}", "n": n + 10, "at": at}
        gone["changes"] = [{"collection": "volunteers", "_id": doc["_id"], "doc": None}]
        await log._derive(put)
        await log._derive(gone)

    pruned = await log.prune_tombstones(datetime.now(UTC) - timedelta(days=7))

    assert pruned == 1
    left = {d["_id"] async for d in db["volunteers"].find({})}
    assert f"{COMMUNITY}:old" not in left
    assert f"{COMMUNITY}:young" in left  # still fencing a late write
    assert any(i.endswith("v1") for i in left)


def partition_of_community(log: CommunityLog[Documents]) -> set[TopicPartition]:
    from shared.owner import partition_of

    return {TopicPartition(VOLUNTEERS_COMMANDS, partition_of(COMMUNITY, log.partitions))}


async def test_a_rebalance_that_hands_back_its_own_partition_keeps_the_state_loaded(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    # Every rebalance revokes every partition (aiokafka's eager protocol): an instance
    # joining or leaving (a rolling restart) must not make the others reload every
    # community they keep — a cheap look for the next entry shows nobody wrote meanwhile.
    log = owner(db, publisher)
    ours = partition_of_community(log)
    await log.on_partitions_assigned(ours)
    await log.handle(inputs(community_defined(COMMUNITY), registration("v1")))
    kept = log.loaded[COMMUNITY]

    await log.on_partitions_revoked(ours)
    assert log.state(COMMUNITY) is None  # not ours meanwhile: nothing read from it
    loads = []
    real_load = log._load

    async def counted(community_id: str) -> Any:
        loads.append(community_id)
        return await real_load(community_id)

    log._load = counted  # type: ignore[method-assign]
    await log.on_partitions_assigned(ours)

    assert loads == [] and log.loaded[COMMUNITY] is kept
    await log.handle(inputs(check_in("v1"), first_offset=2))
    assert (log.state(COMMUNITY) or Documents("x", {})).get("volunteers", "v1")["shift"]


async def test_a_partition_handed_back_after_another_owner_wrote_is_loaded_again(
    db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher
) -> None:
    first = owner(db, publisher)
    ours = partition_of_community(first)
    await first.on_partitions_assigned(ours)
    await first.handle(inputs(community_defined(COMMUNITY), registration("v1")))
    await first.on_partitions_revoked(ours)

    # Meanwhile another instance owned it and decided a check-in.
    second = owner(db, publisher)
    await second.on_partitions_assigned(ours)
    await second.handle(inputs(check_in("v1"), first_offset=2))
    await second.on_partitions_revoked(ours)

    await first.on_partitions_assigned(ours)
    state = first.state(COMMUNITY)
    assert state is not None and state.get("volunteers", "v1")["shift"] is not None
    # And what it decides next is entry 3, not a second entry 2.
    await first.handle(inputs(check_in("v1", command_id="again"), first_offset=3))
    assert await db[LOG].count_documents({"_id": f"{COMMUNITY}:3"}) == 1
