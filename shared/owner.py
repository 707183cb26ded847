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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import bson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from bson.codec_options import CodecOptions
from bson.errors import InvalidBSON, InvalidDocument
from prometheus_client import Counter, Gauge, Histogram
from pymongo import DeleteOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    OperationFailure,
)

from shared import telemetry
from shared.audit import AUDIT, trail_of
from shared.commands import OutcomeBoard
from shared.contracts.base import Payload
from shared.decision import (
    Change,
    Decide,
    Decision,
    Documents,
    Poisoned,
    Refused,
    Rejection,
    Rules,
    State,
    decide_entry,
    entry_event_id,
    offsets_of,
    position,
    stored_offsets,
)
from shared.events import Event
from shared.kafka import EventPublisher, Input, PartitionListener, dead_letter
from shared.log import get_logger
from shared.mongo import DUPLICATE_KEY
from shared.outcome import Outcome

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


class ReadModelRefused(RuntimeError):
    """The database refused a read-model write of a stored entry: the community waits (in
    its lane, retried, counted) rather than go on without that change."""


# What the database says of a document it will not take, whatever is tried: found by
# trying the batch's inputs one by one, then dead-lettered.
REFUSED_BY_DATABASE = (OperationFailure, InvalidDocument, DocumentTooLarge, InvalidBSON)

# Failures of the world, not of the inputs: waited out, never dead-lettered. A read model
# the database refuses is not the inputs' fault either: the entry is stored already.
TRANSIENT = (ConnectionFailure, KafkaError, TimeoutError, OSError, StaleOwner, ReadModelRefused)
VERSION = "_n"  # on every read-model document: the entry that wrote it
# A removed read-model document is left as a tombstone (its id, community, version and this
# mark: the time of the entry that removed it) so that a stale owner's late write of an
# older version finds it newer and changes nothing; readers of a collection that removes
# documents skip tombstones (LIVE). A tombstone fences only writes of entries decided before
# it, by an owner that lost its partition and has not noticed: after a week none is left to
# fence (a paused process is fenced by the log's insert long before), so it is pruned.
REMOVED = "_removed"
TOMBSTONES_KEPT = timedelta(days=7)
PRUNE_EVERY = 3600.0  # seconds
LIVE: dict[str, Any] = {REMOVED: {"$exists": False}}


def older(doc_id: str, n: int) -> dict[str, Any]:
    """A document's filter that matches only a version older than entry ``n``."""
    return {"_id": doc_id, "$or": [{VERSION: {"$lt": n}}, {VERSION: {"$exists": False}}]}


ENTRIES = Counter("doorstep_log_entries_total", "Log entries stored", ["service"])
ENTRY_INPUTS = Histogram(
    "doorstep_log_entry_inputs",
    "Inputs decided per log entry",
    ["service"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200),
)
LOADS = Counter("doorstep_log_loads_total", "Community states loaded from the log", ["service"])
REFUSED = Counter(
    "doorstep_read_model_refused_total",
    "Read-model writes the database refused (the community waits until they are stored)",
    ["service", "collection"],
)
PARKED = Counter(
    "doorstep_log_parked_total",
    "Communities parked in a lane of their own after a failed store",
    ["service"],
)
STUCK = Gauge(
    "doorstep_communities_stuck",
    "Communities waiting in their lane for a reason other than an outage (a refused "
    "read-model write, a bug): /readyz names them",
    ["service"],
)

S = TypeVar("S", bound=State)

# The pure parts live in shared.decision; named here too for the owner's callers.
__all__ = [
    "Change",
    "CommunityLog",
    "Decide",
    "Decision",
    "Documents",
    "Rejection",
    "Rules",
    "entry_event_id",
    "partition_of",
    "position",
]


def now() -> datetime:
    return datetime.now(UTC)


def partition_of(community_id: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key), as the producers use it."""
    return (murmur2(community_id.encode()) & 0x7FFFFFFF) % partitions


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
        # Communities that wait for a reason other than an outage, and why: /readyz says so.
        self.stuck: dict[str, str] = {}
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

    async def settled(self, community_id: str) -> S | None:
        """The live state, with no decision half-made in it: a read waits for the one being
        stored, so it never shows what may yet fail to be stored, and what the reader just
        did is in it. None: not ours or not loaded (read the database)."""
        if self.state(community_id) is None:
            return None
        async with self._lock(community_id):
            return self.state(community_id)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.owned = {tp.partition for tp in assigned}
        if self.partition_count and self.partition_count != self.partitions:
            log.warning(
                "log.partitions_mismatch",
                setting=self.partitions,
                topics=self.partition_count,
                hint="DOORSTEP_TOPIC_PARTITIONS should equal the topics' partition count",
            )
        await self._keep_what_is_still_current()
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

    async def _keep_what_is_still_current(self) -> None:
        """A state kept over a rebalance is used again only if the partition came back and
        nobody stored the community's next entry meanwhile (one look by ``_id``); any
        other is loaded again from the log when it is needed."""
        for community_id, loaded in list(self.loaded.items()):
            if not self.owns(community_id):
                self.forget(community_id)
                continue
            try:
                moved_on = await self.entries.find_one(
                    {"_id": f"{community_id}:{loaded.n + 1}"}, {"_id": 1}
                )
            except Exception as exc:  # the database is away: reload it when it is back
                log.warning("log.keep_unchecked", community=community_id, error=repr(exc))
                self.forget(community_id)
                continue
            if moved_on is not None:
                self.forget(community_id)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Nothing is decided while no partition is ours (``owns`` is false, and reads go
        # to the database). The states stay in memory: an eager rebalance revokes every
        # partition and then hands most of them back, and a state is trusted again only
        # if nobody stored a newer entry in between (``_keep_what_is_still_current``).
        # The next owner of a partition that moved loads from the log, and reads what the
        # lanes held from the last commit (never past them).
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
            decided.extend([*entry["outcomes"], *entry.get("decided", [])])
            n += 1
        docs = {
            kind: await self.db[kind].find({"community_id": community_id, **LIVE}).to_list()
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
                try:
                    stored = await self._handle_community(community_id, chunk, patient=False)
                except Exception as exc:
                    # A bug in the owner's own plumbing: this community waits (retried in
                    # its lane, said in the log), the partition's others go on.
                    log.error("log.owner_failed", community=community_id, error=repr(exc))
                    self._stuck(community_id, exc)
                    self.forget(community_id)
                    stored = False
                if not stored:
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
                    self._stuck(community_id, exc)
                    log.warning("log.lane_retry", community=community_id, error=repr(exc))
                    await asyncio.sleep(1.0)
                    continue
                del lane.waiting[: len(chunk)]  # whatever arrived meanwhile stays queued
                self._stuck(community_id, None)
        finally:
            if self._lanes.get(community_id) is lane:
                del self._lanes[community_id]
                self._stuck(community_id, None)

    def _stuck(self, community_id: str, exc: BaseException | None) -> None:
        if exc is None:
            self.stuck.pop(community_id, None)
        else:
            self.stuck[community_id] = repr(exc)[:300]
        STUCK.labels(self.rules.service).set(len(self.stuck))

    async def _handle_community(
        self, community_id: str, items: list[Input], *, patient: bool = True
    ) -> bool:
        """Decide and store, retrying what fails; False (impatient) when the store
        failed for a reason that is waited out, so the caller parks the community."""
        settled: dict[tuple[str, int], Outcome] = {}  # answered without the rules
        delay, refused = 0.1, 0
        while True:
            if not self.owns(community_id):
                return True  # moved away: the next owner decides from the last commit
            try:
                causes = [(i.event.correlation_id, i.event.id) for i in items]
                async with self._lock(community_id):
                    with telemetry.continued(f"{self.rules.service} decide", causes):
                        await self._decide_and_store(community_id, items, settled)
                if community_id in self.stuck:
                    self._stuck(community_id, None)
                return True
            except Refused as exc:
                # The rules refused after changing what they could not undo: decide again
                # from the stored state, with that input refused from the start.
                self.forget(community_id)
                settled[(exc.item.key, exc.item.offset)] = exc.outcome
                continue
            except Poisoned as exc:
                self.forget(community_id)
                assert isinstance(exc.item, Input)  # what this owner gave the step
                await self._poison(exc.item, exc.reason, settled)
                continue
            except TRANSIENT as exc:
                # The database or broker is away, or another owner stored entry n first:
                # never trust what is in memory; load again and retry, for as long as it takes.
                if isinstance(exc, ReadModelRefused):  # not an outage: said on /readyz
                    self._stuck(community_id, exc)
                log.warning(
                    "log.store_failed", community=community_id, error=repr(exc), retry_in=delay
                )
                if not patient and not isinstance(exc, StaleOwner):  # a lost race: reload now
                    self.forget(community_id)
                    return False
            except REFUSED_BY_DATABASE as exc:
                # The database refuses what was decided (a field name, a size): the same
                # inputs will be refused again. Find the input that does it, one by one.
                # (Any other exception is a bug in this plumbing, not in the inputs: it
                # goes up, and the community waits in a lane of its own, see ``handle``.)
                refused += 1
                log.error("log.entry_refused", community=community_id, error=repr(exc))
                if refused >= REFUSALS:
                    self.forget(community_id)
                    if len(items) == 1 and (items[0].key, items[0].offset) not in settled:
                        await self._poison(items[0], repr(exc), settled)
                        refused = 0
                        continue
                    if len(items) > 1:
                        for item in items:
                            await self._handle_community(community_id, [item])
                        return True
            self.forget(community_id)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _poison(
        self, item: Input, reason: str, settled: dict[tuple[str, int], Outcome]
    ) -> None:
        detail = f"the command could not be applied: {reason}"
        settled[(item.key, item.offset)] = Outcome.rejected(422, "Not applied", detail)
        await dead_letter(self.publisher, item.record, reason, attempts=1, group=self.group_id)

    async def _decide_and_store(
        self, community_id: str, items: list[Input], settled: dict[tuple[str, int], Outcome]
    ) -> None:
        loaded = self.loaded.get(community_id) or await self._load_unlocked(community_id)
        n = loaded.n + 1
        step = decide_entry(
            self.rules,
            self._table,
            loaded.state,
            items,
            community_id=community_id,
            n=n,
            offsets=loaded.offsets,
            seen=loaded.seen,
            decided=self._decided.get(community_id, {}),
            settled=settled,
            clock=now,
        )
        entry = step.entry
        if entry is not None:
            try:
                await self.entries.insert_one(packed(entry))
            except DuplicateKeyError as exc:
                raise StaleOwner(f"entry {n} of {community_id} was stored by another") from exc
            except BaseException:
                # The state holds the decision, stored or not (a cancellation, an outage):
                # never kept — a rebalance may otherwise hand it back as if current.
                self.forget(community_id)
                raise
            ENTRIES.labels(self.rules.service).inc()
            ENTRY_INPUTS.labels(self.rules.service).observe(len(entry["inputs"]))
            self._remember(community_id, [*entry["outcomes"], *entry["decided"]])
            loaded.n = n
        loaded.offsets |= step.offsets
        loaded.seen |= step.seen
        if entry is not None:
            await self._derive(entry, step.events)
            if n == 1 or n - loaded.head >= HEAD_EVERY:
                await self._write_head(community_id, loaded)

    async def _load_unlocked(self, community_id: str) -> Loaded[S]:
        loaded = await self._load(community_id)
        self.loaded[community_id] = loaded
        return loaded

    async def _derive(self, entry: dict[str, Any], events: list[Event] | None = None) -> None:
        """Everything that follows from a stored entry; each step idempotent. ``events``:
        the entry's events as decided (else read back from the entry).

        Every read-model document carries the entry that wrote it (``_n``), and a write
        changes only an older version: an owner that lost its partition (paused, cut off)
        and derives an old entry late cannot put back what a newer one replaced."""
        n = entry["n"]
        fresh: dict[str, list[dict[str, Any]]] = {}
        updates: dict[str, list[dict[str, Any] | str]] = {}  # a new version, or an id removed
        for change in entry["changes"]:
            kind = change["collection"]
            if change["doc"] is None and change.get("hard"):
                updates.setdefault(kind, []).append(change["_id"])
            elif change["doc"] is None:
                gone = {"_id": change["_id"], "community_id": entry["community_id"]}
                gone[REMOVED] = entry["at"]
                updates.setdefault(kind, []).append({**gone, VERSION: n})
            elif change.get("new"):
                fresh.setdefault(kind, []).append({**change["doc"], VERSION: n})
            else:
                updates.setdefault(kind, []).append({**change["doc"], VERSION: n})
        # Collections are independent, and so are the events and the outcomes: each group
        # is written at once (a round trip each, not one after another). Read models come
        # first: whoever hears an event or an outcome may read them at once.
        trail = trail_of(entry)
        await asyncio.gather(
            *(self._insert_fresh(kind, docs, n) for kind, docs in fresh.items()),
            *([self._insert_fresh(AUDIT, trail, n, keep=True)] if trail else []),
            *(self._update(kind, changed, n) for kind, changed in updates.items()),
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

    async def _update(self, kind: str, changed: list[dict[str, Any] | str], n: int) -> None:
        """Replace (or remove) each document if what is stored is older than entry ``n``.
        A document not there at all (never derived, rare) is inserted. No upsert with a
        version filter: meeting a newer version it fails on the _id, and FerretDB's answer
        to that breaks the driver's bulk result."""
        docs = [d for d in changed if isinstance(d, dict)]
        ops: list[Any] = [
            ReplaceOne(older(d["_id"], n), d) if isinstance(d, dict) else DeleteOne(older(d, n))
            for d in changed
        ]
        try:
            result = await self.db[kind].bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            # Anything the database refuses stops the community (it waits in its lane, said
            # loudly): skipped, the next load would build its state without that change.
            self._refused(kind, exc)
            return
        if result.matched_count < len(docs):  # newer there, or not there at all
            ids = [d["_id"] for d in docs]
            there = {d["_id"] async for d in self.db[kind].find({"_id": {"$in": ids}}, {"_id": 1})}
            missing = [d for d in docs if d["_id"] not in there]
            if missing:
                await self._insert_fresh(kind, missing, n)

    async def _insert_fresh(
        self, kind: str, docs: list[dict[str, Any]], n: int, keep: bool = False
    ) -> None:
        """New documents are inserted: an insert is cheap where a replace is not (FerretDB
        on SQLite scans for every update). Those already there (an entry derived again
        after a crash) are replaced instead if older, and end the same; with ``keep``
        (documents that never change, like the audit trail's) they are left as they are."""
        try:
            await self.db[kind].insert_many([dict(d) for d in docs], ordered=False)
        except BulkWriteError as exc:
            self._refused(kind, exc)
            there = {
                docs[e["index"]]["_id"]
                for e in exc.details.get("writeErrors", [])
                if e.get("code") == DUPLICATE_KEY
            }
            if keep:
                return
            again = [ReplaceOne(older(d["_id"], n), d) for d in docs if d["_id"] in there]
            if again:
                await self.db[kind].bulk_write(again, ordered=False)

    def _refused(self, kind: str, exc: BulkWriteError) -> None:
        refused = [e for e in exc.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
        if refused:
            REFUSED.labels(self.rules.service, kind).inc()
            detail = "; ".join(str(e.get("errmsg", e))[:200] for e in refused[:3])
            raise ReadModelRefused(f"{kind}: {detail}")

    async def prune_tombstones(self, before: datetime) -> int:
        """Remove the tombstones of documents removed before ``before``; how many."""
        pruned = 0
        for kind in self.rules.collections:
            result = await self.db[kind].delete_many({REMOVED: {"$lt": before}})
            pruned += result.deleted_count
        return pruned

    async def keep_pruning(self) -> None:
        """Every instance prunes every hour (deleting what another pruned is harmless)."""
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            pruned = await self.prune_tombstones(now() - TOMBSTONES_KEPT)
            if pruned:
                log.info("tombstones.pruned", count=pruned)

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
