"""The one write path every owner shares: each decision is exactly one insert.

An owner (orders, volunteers, dispatch) is the only writer of the communities on the
partitions it holds. For every fetched batch it takes each community's inputs (commands
and other services' facts, from every topic it reads) and decides them with its pure
rules: (state, input, now) -> events and an outcome. The result is stored as ONE insert,
the community's next log entry::

    _id       "{community}:{n}"   unique: the fence against a stale owner
    community_id, n, at
    decision  one BSON value (``packed``) holding:
    inputs    ids of the inputs decided on
    offsets   [{topic, partition, next}] of those inputs
    seen      {producer: [entry, index]} of the last entry event applied per producer
    changes   the documents the decision changed (full new versions): the state delta
    events    the CloudEvents to publish, ids "{service}:{community}:{n}:{i}"
    outcomes  {command id: outcome or refusal}
    commands  per command decided: its type, subject, sender and answer (the audit trail)

Everything else is derived from the entry, after it: the read models (the documents HTTP
reads, which are also the snapshot the state is restored from), the published events,
the outcomes handed to waiting requests, the committed Kafka offsets, and every
``HEAD_EVERY`` entries the head (``heads/{community}``: the entry up to which all of that
was done, and the cumulative offsets and positions).

Loading a community (first input, partition assigned, after any error): read the head,
probe the entries after it by ``_id`` (the one read FerretDB on SQLite serves without a
scan), redo what follows from them (read models, events, outcomes), then restore the
state from the read models. Inputs at or below the stored offsets are skipped: exact
de-duplication of re-delivered records, with no window. Events re-published by a
producer's load carry their position in their id; a copy at or below the last position
applied from that producer is dropped: exact again. A command answered lately (its id
among the last ``RECENT_COMMANDS`` of the community; the head keeps the newest
``HEAD_COMMANDS`` for the next load) is not decided again when a second copy of it comes
as a new record (a producer that died after the broker took it sends it again).

Error policy, per community batch:
- a command the rules refuse → its refusal is the outcome, stored in the entry;
- the rules raise anything else (a bug for that input; retrying cannot help) → the record
  goes to its topic's DLQ at once, the community's state is forgotten (it may be
  half-changed) and the batch is decided again with that input refused;
- storing, publishing or writing read models fails (database or broker away, a stale
  owner losing the race for entry n) → forget the state, reload, try again with backoff,
  for as long as the partition is ours. Never dead-lettered: the input is fine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import bson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from bson.codec_options import CodecOptions
from prometheus_client import Counter, Histogram
from pymongo import DeleteOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError

from shared.audit import AUDIT, command_step, subject_of, trail_of
from shared.commands import Outcome, OutcomeBoard
from shared.contracts.base import Payload
from shared.events import Event
from shared.kafka import EventPublisher, Input, PartitionListener, dead_letter
from shared.log import get_logger
from shared.mongo import DUPLICATE_KEY

log = get_logger(__name__)

LOG = "log"
HEADS = "heads"
HEAD_EVERY = 20  # entries between head writes: a load redoes at most this many
ENTRY_WEIGHT = 500  # inputs (household rows) per entry at most
REFUSALS = 3  # times the database refuses an entry before its inputs are tried one by one
MAX_PARKED = 5_000  # inputs waiting in lanes before the consumer stops fetching
RECENT_COMMANDS = 5_000  # command ids per community kept to refuse a second copy
HEAD_COMMANDS = 1_000  # of which the head keeps the newest, for the next load


class StaleOwner(RuntimeError):
    """Another owner stored this entry first: reload (and find out who owns it now)."""


# Failures of the world, not of the inputs: waited out, never dead-lettered.
TRANSIENT = (ConnectionFailure, KafkaError, TimeoutError, OSError, StaleOwner)

ENTRIES = Counter("doorstep_log_entries_total", "Log entries stored", ["service"])
ENTRY_INPUTS = Histogram(
    "doorstep_log_entry_inputs",
    "Inputs decided per log entry",
    ["service"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200),
)
LOADS = Counter("doorstep_log_loads_total", "Community states loaded from the log", ["service"])
PARKED = Counter(
    "doorstep_log_parked_total",
    "Communities parked in a lane of their own after a failed store",
    ["service"],
)

S = TypeVar("S")


def now() -> datetime:
    return datetime.now(UTC)


def partition_of(community_id: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key), as the producers use it."""
    return (murmur2(community_id.encode()) & 0x7FFFFFFF) % partitions


def stored_offsets(offsets: dict[str, int]) -> list[dict[str, Any]]:
    # Field names may not contain the topics' dots, and FerretDB v1 has no nested arrays.
    return [
        {"topic": key.rsplit("/", 1)[0], "partition": int(key.rsplit("/", 1)[1]), "next": n}
        for key, n in offsets.items()
    ]


def offsets_of(stored: list[dict[str, Any]]) -> dict[str, int]:
    return {f"{o['topic']}/{o['partition']}": o["next"] for o in stored}


ENTRY_FIELDS = ("_id", "community_id", "n", "at")  # stored as fields; the rest is packed


def packed(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as stored: what and when as fields, the decision itself (changes, events,
    outcomes, offsets...) as one BSON value. Nothing queries inside a decision, and
    FerretDB spends its time per field: a whole decision's documents, field by field, cost
    several times what one opaque value does (insert and index alike)."""
    decision = {k: v for k, v in entry.items() if k not in ENTRY_FIELDS}
    return {**{k: entry[k] for k in ENTRY_FIELDS}, "decision": bson.encode(decision)}


def unpacked(stored: dict[str, Any], codec: CodecOptions[Any]) -> dict[str, Any]:
    """The entry as decided (an entry stored before decisions were packed as it is)."""
    if "decision" not in stored:
        return stored
    fields = {k: v for k, v in stored.items() if k != "decision"}
    return {**fields, **bson.decode(stored["decision"], codec)}


def weight_of(payload: Payload) -> int:
    """What an input adds to an entry: a household import its rows, a walk's doors each
    (a door may open orders), anything else one."""
    for name in ("households", "doors"):
        rows = getattr(payload, name, None)
        if isinstance(rows, list):
            return max(1, len(rows))
    return 1


def entry_sized(items: list[Input]) -> list[list[Input]]:
    """Inputs in chunks that keep an entry far below the 16 MB document limit."""
    chunks: list[list[Input]] = [[]]
    weight = 0
    for item in items:
        w = weight_of(item.event.data)
        if chunks[-1] and weight + w > ENTRY_WEIGHT:
            chunks.append([])
            weight = 0
        chunks[-1].append(item)
        weight += w
    return chunks


class Rejection(Exception):
    """A command the rules refuse. What the rules changed before refusing is kept, with
    ``events`` (a refused attempt may still count: a wrong handoff code)."""

    def __init__(
        self,
        status: int,
        reason: str,
        title: str = "Rejected",
        events: list[Payload] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.title = title
        self.events = events or []


@dataclass
class Decision:
    """What one input decided: the events it causes, for a command its answer (None: to
    be answered by a later input), and answers to earlier commands it settles."""

    events: list[Payload] = field(default_factory=list)
    outcome: Outcome | None = None
    answers: dict[str, Outcome] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """A read-model document the decision changed: its new version, or None if removed."""

    collection: str
    doc_id: str
    doc: dict[str, Any] | None
    new: bool = False  # not stored before: inserted, not replaced (see CommunityLog._derive)


Decide = Callable[[S, Event, datetime], Decision]


class Rules(Protocol[S]):
    """What a service supplies: its pure rules and how its state maps to documents."""

    service: str
    events_topic: str
    collections: tuple[str, ...]  # read models holding the state (each has community_id)

    def table(self) -> Mapping[type[Any], Decide[S]]: ...

    def restore(self, community_id: str, docs: dict[str, list[dict[str, Any]]]) -> S: ...

    def changes(self, state: S) -> list[Change]:
        """The documents changed since the last call (and forget them)."""
        ...


def entry_event_id(service: str, community_id: str, n: int, i: int) -> str:
    return f"{service}:{community_id}:{n}:{i}"


def position(event_id: str) -> tuple[str, tuple[int, int]] | None:
    """(producer, (entry, index)) of an event an owner stored in its log, else None."""
    parts = event_id.rsplit(":", 3)
    if len(parts) != 4 or not (parts[2].isdigit() and parts[3].isdigit()):
        return None
    return parts[0], (int(parts[2]), int(parts[3]))


@dataclass
class Loaded(Generic[S]):
    state: S
    n: int  # the last entry
    head: int  # the entry the stored head points at
    offsets: dict[str, int]
    seen: dict[str, list[int]]


@dataclass
class Lane:
    """A community whose inputs could not be stored when their batch came: they wait
    here, in order, retried apart from the consumer's batches (see ``handle``)."""

    waiting: list[Input]
    task: asyncio.Task[None] | None = None


class NotOwner(RuntimeError):
    """The partition moved to another instance while deciding."""


class Documents:
    """A community's documents by collection and id, remembering the ones changed since
    the last ``take_changes``. Rules replace documents (``put``), never edit them in place,
    and refuse before they put anything."""

    def __init__(self, community_id: str, docs: dict[str, list[dict[str, Any]]]) -> None:
        self.community_id = community_id
        self._docs: dict[str, dict[str, dict[str, Any]]] = {
            kind: {d["_id"]: d for d in found} for kind, found in docs.items()
        }
        self._changed: dict[tuple[str, str], dict[str, Any]] = {}
        self._new: set[tuple[str, str]] = set()

    def get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        return self._docs.get(kind, {}).get(doc_id)

    def values(self, kind: str) -> Iterable[dict[str, Any]]:
        return self._docs.get(kind, {}).values()

    def put(self, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
        doc = {**doc, "community_id": self.community_id}
        known = self._docs.setdefault(kind, {})
        if doc["_id"] not in known:
            self._new.add((kind, doc["_id"]))
        known[doc["_id"]] = doc
        self._changed[(kind, doc["_id"])] = doc
        return doc

    def take_changes(self) -> list[Change]:
        changes = [
            Change(kind, doc_id, doc, (kind, doc_id) in self._new)
            for (kind, doc_id), doc in self._changed.items()
        ]
        self._changed, self._new = {}, set()
        return changes


class CommunityLog(PartitionListener, Generic[S]):
    """The shared owner: decides batches with a service's rules and stores each as one
    log entry (see the module docstring for the whole protocol)."""

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        publisher: EventPublisher,
        rules: Rules[S],
        *,
        partitions: int,
        group_id: str,
        outcomes: OutcomeBoard | None = None,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.rules = rules
        self.partitions = partitions
        self.group_id = group_id
        self.outcomes = outcomes
        self.entries = db[LOG]
        self.heads = db[HEADS]
        self.loaded: dict[str, Loaded[S]] = {}
        self.owned: set[int] | None = None  # None: not told yet (no rebalance listener)
        self._table = rules.table()
        self._locks: dict[str, asyncio.Lock] = {}
        self._lanes: dict[str, Lane] = {}
        # Per community, the commands decided lately (oldest first). A command sent twice
        # (a producer that died after the broker took it sends it again, as a new record,
        # past the offsets) is decided once. Kept across reloads; entries after the head
        # add theirs on load.
        self._decided: dict[str, dict[str, None]] = {}

    async def ensure_indexes(self) -> None:
        # A load reads a community's read models by community_id (served by an index on
        # MongoDB and FerretDB's PostgreSQL backend; scanned on SQLite, once per load).
        for kind in self.rules.collections:
            await self.db[kind].create_index([("community_id", 1)])
        await self.db[AUDIT].create_index([("subject", 1)])

    # --- ownership ---------------------------------------------------------------------

    def owns(self, community_id: str) -> bool:
        if self.owned is None:
            return True
        # The topics' real partition count, as the consumer found it (a setting that
        # disagrees with the broker must not make an owner disown its communities).
        count = self.partition_count or self.partitions
        return partition_of(community_id, count) in self.owned

    def state(self, community_id: str) -> S | None:
        """The live state when this instance owns the community and has it loaded."""
        loaded = self.loaded.get(community_id)
        return loaded.state if loaded is not None and self.owns(community_id) else None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.owned = {tp.partition for tp in assigned}
        if self.partition_count and self.partition_count != self.partitions:
            log.warning(
                "log.partitions_mismatch",
                setting=self.partitions,
                topics=self.partition_count,
                hint="DOORSTEP_TOPIC_PARTITIONS should equal the topics' partition count",
            )
        # Load the communities now ours, so their timers re-arm and their last entries'
        # events go out even if no input arrives for them.
        try:
            communities = [h["_id"] async for h in self.heads.find({}, {"_id": 1})]
        except Exception as exc:  # the database is away: each loads on its next input
            log.warning("log.heads_unreadable", error=repr(exc))
            communities = []
        for community_id in filter(self.owns, communities):
            try:
                await self.load(community_id)
            except Exception as exc:  # loaded again on its next input
                log.warning("log.load_failed", community=community_id, error=repr(exc))
        log.info(f"{self.rules.service}.assigned", partitions=sorted(self.owned))

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # State is never trusted across owners: the next owner loads it from the log, and
        # reads what the lanes held from the last commit (never past them).
        self.loaded.clear()
        self.owned = set()
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        self._lanes.clear()

    # --- loading -----------------------------------------------------------------------

    async def load(self, community_id: str) -> Loaded[S]:
        async with self._lock(community_id):
            loaded = self.loaded.get(community_id)
            if loaded is None:
                loaded = await self._load(community_id)
                self.loaded[community_id] = loaded
            return loaded

    def _lock(self, community_id: str) -> asyncio.Lock:
        return self._locks.setdefault(community_id, asyncio.Lock())

    async def _load(self, community_id: str) -> Loaded[S]:
        head = await self.heads.find_one({"_id": community_id}) or {}
        n = head.get("n", 0)
        loaded_head = n
        offsets = offsets_of(head.get("offsets", []))
        seen: dict[str, list[int]] = dict(head.get("seen", {}))
        decided: list[str] = list(head.get("decided", []))
        while (
            stored := await self.entries.find_one({"_id": f"{community_id}:{n + 1}"})
        ) is not None:
            entry = unpacked(stored, self.db.codec_options)
            # After the head, nothing derived from the entry is known to be done: redo it
            # all (every step is idempotent; consumers drop re-published copies by id).
            await self._derive(entry)
            offsets |= offsets_of(entry["offsets"])
            seen |= entry["seen"]
            decided.extend(entry["outcomes"])
            n += 1
        docs = {
            kind: await self.db[kind].find({"community_id": community_id}).to_list()
            for kind in self.rules.collections
        }
        loaded = Loaded(self.rules.restore(community_id, docs), n, loaded_head, offsets, seen)
        self._remember(community_id, decided)
        self.rules.changes(loaded.state)  # restored, not changed
        if n > loaded_head:
            await self._write_head(community_id, loaded)
        LOADS.labels(self.rules.service).inc()
        return loaded

    def _remember(self, community_id: str, command_ids: Iterable[str]) -> None:
        decided = self._decided.setdefault(community_id, {})
        for command_id in command_ids:
            decided[command_id] = None
        while len(decided) > RECENT_COMMANDS:
            del decided[next(iter(decided))]

    def forget(self, community_id: str) -> None:
        self.loaded.pop(community_id, None)

    # --- deciding and storing ----------------------------------------------------------

    async def handle(self, inputs: list[Input]) -> None:
        """One fetched batch: each community's inputs become (at most) one entry. A
        community whose entry cannot be stored now is parked in a lane of its own and
        retried there, so it holds no other community back beyond this batch."""
        by_community: dict[str, list[Input]] = {}
        for item in inputs:
            by_community.setdefault(item.event.community_id, []).append(item)

        async def decide(community_id: str, items: list[Input]) -> None:
            lane = self._lanes.get(community_id)
            if lane is not None:
                lane.waiting.extend(items)  # in order, behind what already waits
                return
            chunks = entry_sized(items)
            for i, chunk in enumerate(chunks):
                if not await self._handle_community(community_id, chunk, patient=False):
                    self._park(community_id, [item for c in chunks[i:] for item in c])
                    return

        # Communities are independent: their entries are stored side by side, so one
        # community's round trips do not wait behind another's.
        await asyncio.gather(*(decide(c, items) for c, items in by_community.items()))
        # Lanes are memory: while too much waits in them (a database outage), fetch no more.
        while sum(len(lane.waiting) for lane in self._lanes.values()) > MAX_PARKED:
            await asyncio.sleep(0.1)

    def held_offsets(self) -> dict[str, int]:
        """Per "topic/partition", the first offset a lane still waits to store: the
        consumer commits no further (a restart must read those records again)."""
        held: dict[str, int] = {}
        for lane in self._lanes.values():
            for item in lane.waiting:
                held[item.key] = min(held.get(item.key, item.record.offset), item.record.offset)
        return held

    def _park(self, community_id: str, items: list[Input]) -> None:
        lane = Lane(list(items))
        self._lanes[community_id] = lane
        lane.task = asyncio.create_task(self._drain(community_id, lane))
        PARKED.labels(self.rules.service).inc()

    async def _drain(self, community_id: str, lane: Lane) -> None:
        """Store a parked community's inputs, in order, for as long as it takes (or until
        the community moves to another owner); then it rejoins the batches."""
        try:
            while lane.waiting:
                chunk = entry_sized(lane.waiting)[0]
                try:
                    await self._handle_community(community_id, chunk)
                except Exception as exc:
                    # Not even dead-lettering worked (the broker away too): the inputs stay
                    # in the lane, held from the commit, and are tried again.
                    self.forget(community_id)
                    log.warning("log.lane_retry", community=community_id, error=repr(exc))
                    await asyncio.sleep(1.0)
                    continue
                del lane.waiting[: len(chunk)]  # whatever arrived meanwhile stays queued
        finally:
            if self._lanes.get(community_id) is lane:
                del self._lanes[community_id]

    async def _handle_community(
        self, community_id: str, items: list[Input], *, patient: bool = True
    ) -> bool:
        """Decide and store, retrying what fails; False (impatient) when the store
        failed for a reason that is waited out, so the caller parks the community."""
        poisoned: dict[tuple[str, int], str] = {}
        delay, refused = 0.1, 0
        while True:
            if not self.owns(community_id):
                return True  # moved away: the next owner decides from the last commit
            try:
                async with self._lock(community_id):
                    await self._decide_and_store(community_id, items, poisoned)
                return True
            except Poisoned as exc:
                self.forget(community_id)
                await self._poison(exc.item, exc.reason, poisoned)
                continue
            except TRANSIENT as exc:
                # The database or broker is away, or another owner stored entry n first:
                # never trust what is in memory; load again and retry, for as long as it takes.
                log.warning(
                    "log.store_failed", community=community_id, error=repr(exc), retry_in=delay
                )
                if not patient and not isinstance(exc, StaleOwner):  # a lost race: reload now
                    self.forget(community_id)
                    return False
            except Exception as exc:
                # The database refuses what was decided (a field name, a size): the same
                # inputs will be refused again. Find the input that does it, one by one.
                refused += 1
                log.error("log.entry_refused", community=community_id, error=repr(exc))
                if refused >= REFUSALS:
                    self.forget(community_id)
                    if len(items) == 1 and (items[0].key, items[0].record.offset) not in poisoned:
                        await self._poison(items[0], repr(exc), poisoned)
                        refused = 0
                        continue
                    if len(items) > 1:
                        for item in items:
                            await self._handle_community(community_id, [item])
                        return True
            self.forget(community_id)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _poison(self, item: Input, reason: str, poisoned: dict[tuple[str, int], str]) -> None:
        poisoned[(item.key, item.record.offset)] = reason
        await dead_letter(self.publisher, item.record, reason, attempts=1, group=self.group_id)

    async def _decide_and_store(
        self, community_id: str, items: list[Input], poisoned: dict[tuple[str, int], str]
    ) -> None:
        loaded = self.loaded.get(community_id) or await self._load_unlocked(community_id)
        decided = self._decided.get(community_id, {})
        fresh_next: dict[str, int] = {}
        fresh: list[Input] = []
        for item in items:  # not decided yet, and once each (a lane may be fed a record twice)
            if item.record.offset >= max(
                loaded.offsets.get(item.key, 0), fresh_next.get(item.key, 0)
            ):
                fresh.append(item)
                fresh_next[item.key] = item.record.offset + 1
        if not fresh:
            return
        moment = now()
        n = loaded.n + 1
        offsets: dict[str, int] = {}
        seen: dict[str, list[int]] = {}
        events: list[Event] = []
        outcomes: dict[str, Any] = {}
        commands: list[dict[str, Any]] = []
        for item in fresh:
            offsets[item.key] = item.record.offset + 1
            event = item.event
            command_id = getattr(event.data, "command_id", None)
            reason = poisoned.get((item.key, item.record.offset))
            if reason is not None:
                if command_id:
                    outcomes[command_id] = Outcome.rejected(
                        422, "Not applied", f"the command could not be applied: {reason}"
                    ).model_dump()
                continue
            if command_id and (command_id in outcomes or command_id in decided):
                continue  # a second copy of a command already decided and answered
            pos = position(event.id)
            if pos is not None:
                producer, at = pos
                last = seen.get(producer) or loaded.seen.get(producer)
                if last is not None and list(at) <= last:
                    continue  # a re-published copy of an event already applied
                seen[producer] = list(at)
            decide = self._table.get(type(event.data))
            if decide is None:
                continue  # not this owner's business
            try:
                # Each input at its own moment: one batch is not one instant (who has been
                # idle longest is decided by it).
                decision = decide(loaded.state, event, now())
            except Rejection as refusal:
                decision = Decision(
                    refusal.events,
                    Outcome.rejected(refusal.status, refusal.title, refusal.reason),
                )
            except Exception as exc:
                raise Poisoned(item, repr(exc)) from exc
            for payload in decision.events:
                events.append(
                    Event(
                        id=entry_event_id(self.rules.service, community_id, n, len(events)),
                        source=f"/{self.rules.service}",
                        community_id=community_id,
                        time=moment,
                        subject=subject_of(payload),
                        correlation_id=event.correlation_id,
                        data=payload,
                    )
                )
            if command_id:
                commands.append(command_step(event.data, decision.outcome))
            if command_id and decision.outcome is not None:
                outcomes[command_id] = decision.outcome.model_dump()
            outcomes |= {cid: answer.model_dump() for cid, answer in decision.answers.items()}
        changes = self.rules.changes(loaded.state)
        if not (changes or events or outcomes):
            # Nothing decided (facts that are not this owner's business, copies): no entry.
            # Re-delivered, they decide nothing again.
            loaded.offsets |= offsets
            loaded.seen |= seen
            return
        entry = {
            "_id": f"{community_id}:{n}",
            "community_id": community_id,
            "n": n,
            "at": moment,
            "inputs": [i.event.id for i in fresh],
            "offsets": stored_offsets(offsets),
            "seen": seen,
            "changes": [
                {"collection": c.collection, "_id": c.doc_id, "doc": c.doc, "new": c.new}
                for c in changes
            ],
            "events": [e.model_dump(mode="json") for e in events],
            "outcomes": outcomes,
            "commands": commands,
        }
        try:
            await self.entries.insert_one(packed(entry))
        except DuplicateKeyError as exc:
            raise StaleOwner(f"entry {n} of {community_id} was stored by another owner") from exc
        ENTRIES.labels(self.rules.service).inc()
        ENTRY_INPUTS.labels(self.rules.service).observe(len(fresh))
        self._remember(community_id, outcomes)
        loaded.n = n
        loaded.offsets |= offsets
        loaded.seen |= seen
        await self._derive(entry, events)
        if n == 1 or n - loaded.head >= HEAD_EVERY:
            await self._write_head(community_id, loaded)

    async def _load_unlocked(self, community_id: str) -> Loaded[S]:
        loaded = await self._load(community_id)
        self.loaded[community_id] = loaded
        return loaded

    async def _derive(self, entry: dict[str, Any], events: list[Event] | None = None) -> None:
        """Everything that follows from a stored entry; each step idempotent. ``events``:
        the entry's events as decided (else read back from the entry)."""
        fresh: dict[str, list[dict[str, Any]]] = {}
        updates: dict[str, list[Any]] = {}
        for change in entry["changes"]:
            kind = change["collection"]
            if change["doc"] is None:
                updates.setdefault(kind, []).append(DeleteOne({"_id": change["_id"]}))
            elif change.get("new"):
                fresh.setdefault(kind, []).append(change["doc"])
            else:
                updates.setdefault(kind, []).append(
                    ReplaceOne({"_id": change["_id"]}, change["doc"], upsert=True)
                )
        # Collections are independent, and so are the events and the outcomes: each group
        # is written at once (a round trip each, not one after another). Read models come
        # first: whoever hears an event or an outcome may read them at once.
        trail = trail_of(entry)
        await asyncio.gather(
            *(self._insert_fresh(kind, docs) for kind, docs in fresh.items()),
            *([self._insert_fresh(AUDIT, trail, keep=True)] if trail else []),
            *(self._update(kind, ops) for kind, ops in updates.items()),
        )
        announced = []
        if entry["events"]:
            if events is None:
                events = [Event.model_validate(e) for e in entry["events"]]
            announced.append(self.publisher.publish_many(self.rules.events_topic, events))
        if entry["outcomes"] and self.outcomes is not None:
            outcomes = {k: Outcome.model_validate(v) for k, v in entry["outcomes"].items()}
            announced.append(self.outcomes.record(entry["community_id"], outcomes))
        await asyncio.gather(*announced)

    async def _update(self, kind: str, ops: list[Any]) -> None:
        try:
            await self.db[kind].bulk_write(ops, ordered=True)
        except BulkWriteError as exc:
            # A read model the database refuses must not stop the community: the log
            # holds the truth; this is a bug to fix, said loudly.
            log.error("log.read_model_refused", collection=kind, error=repr(exc))

    async def _insert_fresh(
        self, kind: str, docs: list[dict[str, Any]], keep: bool = False
    ) -> None:
        """New documents are inserted: an insert is cheap where a replace is not (FerretDB
        on SQLite scans for every update). Those already there (an entry derived again
        after a crash) are replaced instead, and end the same; with ``keep`` (documents
        that never change, like the audit trail's) they are left as they are."""
        try:
            await self.db[kind].insert_many([dict(d) for d in docs], ordered=False)
        except BulkWriteError as exc:
            there = {
                docs[e["index"]]["_id"]
                for e in exc.details.get("writeErrors", [])
                if e.get("code") == DUPLICATE_KEY
            }
            if len(there) < len(exc.details.get("writeErrors", [])):
                log.error("log.read_model_refused", collection=kind, error=repr(exc))
            if keep:
                return
            again = [
                ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs if d["_id"] in there
            ]
            if again:
                await self.db[kind].bulk_write(again, ordered=False)

    async def _write_head(self, community_id: str, loaded: Loaded[S]) -> None:
        await self.heads.replace_one(
            {"_id": community_id},
            {
                "n": loaded.n,
                "offsets": stored_offsets(loaded.offsets),
                "seen": loaded.seen,
                "decided": list(self._decided.get(community_id, {}))[-HEAD_COMMANDS:],
                "at": now(),
            },
            upsert=True,
        )
        loaded.head = loaded.n


class Poisoned(Exception):
    def __init__(self, item: Input, reason: str) -> None:
        super().__init__(reason)
        self.item = item
        self.reason = reason
