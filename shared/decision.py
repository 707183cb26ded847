"""The decision, apart from its I/O: what a rule module needs, and the one pure step that
turns a community's loaded state and a batch of its inputs into the log entry to store.

Nothing here touches Kafka, a database or the web: the owner (``shared.owner``) loads,
keeps lanes and stores; this module decides. The service rule modules (orders, volunteers,
dispatch, campaigns, identity) import only this module and the contracts.

Exactly once, as the step keeps it:
- an input at or below the stored offset of its topic-partition is a re-delivered record:
  skipped (exact, no window);
- an event re-published by a producer's load carries its position (``position``): a copy
  at or below the last position applied from that producer is skipped;
- a command already decided (its id among the community's recent ones, or earlier in
  this batch) that comes again as a new record is not decided again.

A refusal changes nothing. Rules change the state in place, so before each input the
state is given a savepoint; a ``Rejection`` rolls it back (a refusal that ``counts``,
like a wrong handoff code, keeps what it changed and its events). A state that cannot
roll back (``rollback`` answers False) raises ``Refused``: the owner forgets the state,
loads it again and decides the batch anew with that input refused from the start.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from shared.contracts.base import Payload
from shared.events import Event
from shared.outcome import Outcome
from shared.trail import command_step, subject_of

__all__ = [
    "Change",
    "Decide",
    "Decision",
    "Delivered",
    "Documents",
    "Poisoned",
    "Refused",
    "Rejection",
    "Rules",
    "State",
    "Step",
    "decide_entry",
    "entry_event_id",
    "position",
]


class Rejection(Exception):
    """A command the rules refuse: it changes nothing, unless the refusal ``counts`` (a
    wrong handoff code counts towards the lock): then what the rules changed before
    refusing is kept, with ``events``."""

    def __init__(
        self,
        status: int,
        reason: str,
        title: str = "Rejected",
        events: list[Payload] | None = None,
        *,
        counts: bool = False,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.title = title
        self.events = events or []
        self.counts = counts or bool(events)

    def outcome(self) -> Outcome:
        return Outcome.rejected(self.status, self.title, self.reason)


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
    # Removed for good, not left as a tombstone (a copy under an old key, moved to a new
    # one: no owner would write it again).
    hard: bool = False


class State(Protocol):
    """What the step asks of a community's state: undo what one input changed."""

    def savepoint(self) -> None: ...

    def rollback(self) -> bool:
        """Undo everything since the savepoint; False if that cannot be done here."""
        ...


S = TypeVar("S", bound=State)
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


class Documents:
    """A community's documents by collection and id, remembering the ones changed since
    the last ``take_changes``. Rules replace documents (``put``), never edit them in place.
    Since the last ``savepoint`` each document's version before it is kept, so a refused
    command is undone (``rollback``) however far it got."""

    def __init__(
        self,
        community_id: str,
        docs: dict[str, list[dict[str, Any]]],
        scoped: Mapping[str, str] | None = None,
    ) -> None:
        self.community_id = community_id
        # Collections whose ids are unique only within a community (a cadre's id may be
        # registered in two): the rules see the bare id, the database the community's
        # ``{community}:{id}`` with the bare id in the named field.
        self.scoped = dict(scoped or {})
        self._legacy: set[tuple[str, str]] = set()  # stored under a bare id before that
        self._docs: dict[str, dict[str, dict[str, Any]]] = {
            kind: self._in_memory(kind, found) for kind, found in docs.items()
        }
        self._changed: dict[tuple[str, str], dict[str, Any]] = {}
        self._new: set[tuple[str, str]] = set()
        # (kind, id) -> (the document, its pending change, whether new) at the savepoint
        self._before: dict[tuple[str, str], tuple[Any, Any, bool]] = {}

    def _in_memory(self, kind: str, found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        field = self.scoped.get(kind)
        if field is None:
            return {d["_id"]: d for d in found}
        mine = {d[field]: {**d, "_id": d[field]} for d in found if field in d}
        for d in found:  # a bare id, stored before keys carried the community
            if field not in d and d["_id"] not in mine:
                mine[d["_id"]] = d
                self._legacy.add((kind, d["_id"]))
        return mine

    def stored_id(self, kind: str, doc_id: str) -> str:
        return f"{self.community_id}:{doc_id}" if kind in self.scoped else doc_id

    def get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        return self._docs.get(kind, {}).get(doc_id)

    def values(self, kind: str) -> Iterable[dict[str, Any]]:
        return self._docs.get(kind, {}).values()

    def put(self, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
        doc = {**doc, "community_id": self.community_id}
        key = (kind, doc["_id"])
        known = self._docs.setdefault(kind, {})
        if key not in self._before:
            self._before[key] = (known.get(key[1]), self._changed.get(key), key in self._new)
        if doc["_id"] not in known:
            self._new.add(key)
        known[doc["_id"]] = doc
        self._changed[key] = doc
        return doc

    def savepoint(self) -> None:
        self._before = {}

    def rollback(self) -> bool:
        for (kind, doc_id), (doc, changed, new) in self._before.items():
            known = self._docs.setdefault(kind, {})
            if doc is None:
                known.pop(doc_id, None)
            else:
                known[doc_id] = doc
            if changed is None:
                self._changed.pop((kind, doc_id), None)
            else:
                self._changed[(kind, doc_id)] = changed
            if not new:
                self._new.discard((kind, doc_id))
        self._before = {}
        return True

    def touched(self) -> set[str]:
        """The collections put to since the savepoint."""
        return {kind for kind, _ in self._before}

    def take_changes(self) -> list[Change]:
        changes = []
        for (kind, doc_id), doc in self._changed.items():
            field = self.scoped.get(kind)
            if field is None:
                changes.append(Change(kind, doc_id, doc, (kind, doc_id) in self._new))
                continue
            stored = self.stored_id(kind, doc_id)
            legacy = (kind, doc_id) in self._legacy
            kept = None if doc is None else {**doc, "_id": stored, field: doc_id}
            changes.append(Change(kind, stored, kept, (kind, doc_id) in self._new or legacy))
            if legacy:  # moved to its community's key: the bare one goes
                changes.append(Change(kind, doc_id, None, hard=True))
                self._legacy.discard((kind, doc_id))
        self._changed, self._new = {}, set()
        return changes


class Delivered(Protocol):
    """An input as the step sees it: the event, and where it was read."""

    @property
    def key(self) -> str: ...  # "topic/partition"

    @property
    def offset(self) -> int: ...

    @property
    def event(self) -> Event: ...


class Poisoned(Exception):
    """The rules raised something other than a refusal: a bug for this input."""

    def __init__(self, item: Delivered, reason: str) -> None:
        super().__init__(reason)
        self.item = item
        self.reason = reason


class Refused(Exception):
    """A refusal the state could not undo: decide the batch again from a fresh load,
    with this input answered ``outcome`` from the start."""

    def __init__(self, item: Delivered, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.item = item
        self.outcome = outcome


@dataclass
class Step:
    """What a batch decided: the entry to store (None: nothing to store), its events as
    decided, and how far the inputs go (stored with the entry, or advanced without)."""

    entry: dict[str, Any] | None
    events: list[Event]
    offsets: dict[str, int]
    seen: dict[str, list[int]]


def decide_entry(
    rules: Rules[S],
    table: Mapping[type[Any], Decide[S]],
    state: S,
    items: Sequence[Delivered],
    *,
    community_id: str,
    n: int,
    offsets: Mapping[str, int],
    seen: Mapping[str, list[int]],
    decided: Collection[str],
    settled: Mapping[tuple[str, int], Outcome],
    clock: Callable[[], datetime],
) -> Step:
    """Entry ``n`` of a community: ``items`` decided against ``state`` (changed in place).

    ``offsets``/``seen``/``decided``: what the stored log already covers. ``settled``:
    inputs answered without the rules (a poisoned input, a refusal decided again)."""
    moment = clock()
    step_offsets: dict[str, int] = {}
    step_seen: dict[str, list[int]] = {}
    events: list[Event] = []
    outcomes: dict[str, Any] = {}
    commands: list[dict[str, Any]] = []
    decided_here: dict[str, None] = {}  # command ids decided in this entry, answered or not
    decided_items = []
    for item in items:
        if item.offset < max(offsets.get(item.key, 0), step_offsets.get(item.key, 0)):
            continue  # a re-delivered record (or one a lane was fed twice)
        decided_items.append(item)
        step_offsets[item.key] = item.offset + 1
        event = item.event
        command_id = getattr(event.data, "command_id", None)
        answer = settled.get((item.key, item.offset))
        if answer is not None:
            if command_id:
                outcomes[command_id] = answer.model_dump()
                decided_here[command_id] = None
                commands.append(command_step(event.data, answer))
            continue
        if command_id and (command_id in decided_here or command_id in decided):
            continue  # a second copy of a command already decided (answered, or to be)
        pos = position(event.id)
        if pos is not None:
            producer, at = pos
            last = step_seen.get(producer) or seen.get(producer)
            if last is not None and list(at) <= last:
                continue  # a re-published copy of an event already applied
            step_seen[producer] = list(at)
        decide = table.get(type(event.data))
        if decide is None:
            continue  # not this owner's business
        if command_id:
            decided_here[command_id] = None
        state.savepoint()
        try:
            # Each input at its own moment: one batch is not one instant (who has been
            # idle longest is decided by it).
            decision = decide(state, event, clock())
        except Rejection as refusal:
            if not refusal.counts and not state.rollback():
                raise Refused(item, refusal.outcome()) from refusal
            decision = Decision(refusal.events if refusal.counts else [], refusal.outcome())
        except Exception as exc:
            raise Poisoned(item, repr(exc)) from exc
        for payload in decision.events:
            events.append(
                Event(
                    id=entry_event_id(rules.service, community_id, n, len(events)),
                    source=f"/{rules.service}",
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
    changes = rules.changes(state)
    if not (changes or events or outcomes or decided_here):
        # Nothing decided (facts that are not this owner's business, copies): no entry.
        # Re-delivered, they decide nothing again.
        return Step(None, [], step_offsets, step_seen)
    entry = {
        "_id": f"{community_id}:{n}",
        "community_id": community_id,
        "n": n,
        "at": moment,
        "inputs": [i.event.id for i in decided_items],
        "offsets": stored_offsets(step_offsets),
        "seen": step_seen,
        "changes": [
            {"collection": c.collection, "_id": c.doc_id, "doc": c.doc, "new": c.new}
            | ({"hard": True} if c.hard else {})
            for c in changes
        ],
        "events": [e.model_dump(mode="json") for e in events],
        "outcomes": outcomes,
        "commands": commands,
        # Every command decided here, answered now or later (a cancel waiting for
        # dispatch): a second copy of one is not decided again.
        "decided": list(decided_here),
    }
    return Step(entry, events, step_offsets, step_seen)


def stored_offsets(offsets: Mapping[str, int]) -> list[dict[str, Any]]:
    # Field names may not contain the topics' dots, and FerretDB v1 has no nested arrays.
    return [
        {"topic": key.rsplit("/", 1)[0], "partition": int(key.rsplit("/", 1)[1]), "next": n}
        for key, n in offsets.items()
    ]


def offsets_of(stored: list[dict[str, Any]]) -> dict[str, int]:
    return {f"{o['topic']}/{o['partition']}": o["next"] for o in stored}
