"""The decision step, apart from any broker or database: a refusal changes nothing, and
re-delivered records, re-sent commands and any chunking of a community's inputs decide
the same as each input once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatch.board import Board
from services.dispatch.handlers import DispatchRules
from shared.contracts import dispatch as d
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.contracts.base import Payload
from shared.decision import (
    Change,
    Decide,
    Decision,
    Documents,
    Refused,
    Rejection,
    decide_entry,
)
from shared.events import Event
from shared.outcome import Outcome
from tests.unit.test_board import GRIDS, board_with, facts

T0 = datetime(2022, 5, 28, 8, 0, tzinfo=UTC)
TALLY = "tallies"


@dataclass(frozen=True)
class Record:
    """An input as the step sees it."""

    key: str
    offset: int
    event: Event


def tally(docs: Documents, event: Event, now: datetime) -> Decision:
    """A rule that changes the state and then, for a 'bad' order, refuses: what every rule
    looping over a batch (a walk's doors, an import's rows) can do."""
    cmd = event.data
    assert isinstance(cmd, o.ReviewOrder)
    for name in cmd.order_id.split("+"):
        doc = docs.get(TALLY, name) or {"_id": name, "n": 0}
        docs.put(TALLY, {**doc, "n": doc["n"] + 1})
        if name.startswith("bad"):
            raise Rejection(409, f"{name} is refused")
    return Decision([], Outcome.ok({"tallied": cmd.order_id}))


class TallyRules:
    service = "tests"
    events_topic = "tests.events"
    collections = (TALLY,)

    def table(self) -> Mapping[type[Any], Decide[Documents]]:
        return {o.ReviewOrder: tally}

    def restore(self, community_id: str, docs: dict[str, list[dict[str, Any]]]) -> Documents:
        return Documents(community_id, docs)

    def changes(self, state: Documents) -> list[Change]:
        return state.take_changes()


RULES = TallyRules()


def review(command_id: str, names: str, offset: int) -> Record:
    cmd = o.ReviewOrder(command_id=command_id, actor="staff", order_id=names)
    return Record("orders.commands/0", offset, Event(source="/t", community_id="c", data=cmd))


def step(state: Any, items: list[Record], n: int = 1, **known: Any) -> Any:
    rules = known.pop("rules", RULES)
    return decide_entry(
        rules,
        rules.table(),
        state,
        items,
        community_id="c",
        n=n,
        offsets=known.get("offsets", {}),
        seen={},
        decided=known.get("decided", set()),
        settled=known.get("settled", {}),
        clock=lambda: T0,
    )


def tallies(docs: Documents) -> dict[str, int]:
    return {d["_id"]: d["n"] for d in docs.values(TALLY)}


def test_a_command_refused_half_way_through_keeps_none_of_its_changes() -> None:
    docs = Documents("c", {})
    done = step(docs, [review("c1", "a+b", 0), review("c2", "a+bad+z", 1), review("c3", "z", 2)])
    assert tallies(docs) == {"a": 1, "b": 1, "z": 1}
    stored = {c["_id"]: c["doc"]["n"] for c in done.entry["changes"]}
    assert stored == {"a": 1, "b": 1, "z": 1}  # nothing of c2 reaches the log
    assert done.entry["outcomes"]["c2"]["status"] == 409
    assert done.entry["outcomes"]["c3"]["status"] == 200


commands = st.lists(
    st.lists(st.sampled_from(["a", "b", "c", "bad1", "bad2"]), min_size=1, max_size=4),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(commands)
def test_a_refusal_at_any_point_leaves_the_state_as_if_the_command_never_came(
    sequence: list[list[str]],
) -> None:
    docs = Documents("c", {})
    items = [review(f"c{i}", "+".join(names), i) for i, names in enumerate(sequence)]
    done = step(docs, items)
    accepted = [names for names in sequence if not any(n.startswith("bad") for n in names)]
    expected: dict[str, int] = {}
    for names in accepted:
        for name in names:
            expected[name] = expected.get(name, 0) + 1
    assert tallies(docs) == expected
    if done.entry is not None:
        assert {c["_id"]: c["doc"]["n"] for c in done.entry["changes"]} == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "bad", "a+b", "b+bad"]), min_size=1, max_size=10),
    st.data(),
)
def test_copies_resends_and_any_chunking_decide_the_same_as_each_input_once(
    names: list[str], data: st.DataObject
) -> None:
    once = [review(f"c{i}", n, i) for i, n in enumerate(names)]
    alone = Documents("c", {})
    expected = step(alone, once).entry

    # The same commands, as a broker and a producer deliver them in real life: a record
    # read again after a rebalance (same offset), a command a producer sent twice (a new
    # offset), in chunks of any size, one step each.
    stream: list[Record] = []
    for item in once:
        stream.append(item)
        if data.draw(st.booleans(), label="copy"):
            stream.append(item)  # re-delivered: same offset
    resent = data.draw(st.lists(st.sampled_from(once), max_size=3), label="resent")
    offset = len(once)
    for item in resent:
        stream.append(Record(item.key, offset, item.event))
        offset += 1
    docs = Documents("c", {})
    offsets: dict[str, int] = {}
    decided: dict[str, None] = {}
    outcomes: dict[str, Any] = {}
    n = 0
    i = 0
    while i < len(stream):
        size = data.draw(st.integers(1, 4), label="chunk")
        # A lane may be fed a record it already has: the chunk overlaps the last one.
        back = data.draw(st.integers(0, min(i, 2)), label="overlap")
        chunk = stream[i - back : i + size]
        i += size
        done = step(docs, chunk, n + 1, offsets=offsets, decided=decided)
        offsets |= done.offsets
        if done.entry is not None:
            n += 1
            outcomes |= done.entry["outcomes"]
            decided |= dict.fromkeys(done.entry["outcomes"])
    assert tallies(docs) == tallies(alone)
    assert outcomes == (expected or {}).get("outcomes", {})


def test_a_board_that_cannot_undo_a_refusal_has_it_decided_again_from_the_stored_state() -> None:
    def refuse_after_a_change(board: Board, event: Event, now: datetime) -> Decision:
        board.order_open(facts("o9"), now)  # a change, then a refusal: a rule's bug
        raise Rejection(409, "refused late")

    class Late(DispatchRules):
        def table(self) -> Mapping[type[Any], Decide[Board]]:
            return {o.ReviewOrder: refuse_after_a_change}

    rules = Late(120, 600)
    board = board_with(("v1", "g3", 1))
    board.take_changes()
    late = review("c1", "o9", 0)
    with pytest.raises(Refused) as refused:
        step(board, [late], rules=rules)
    assert refused.value.outcome.status == 409
    # The owner reloads the board and decides again, that input answered from the start.
    fresh = board_with(("v1", "g3", 1))
    fresh.take_changes()
    settled = {(late.key, late.offset): refused.value.outcome}
    done = step(fresh, [late], rules=rules, settled=settled)
    assert "o9" not in fresh.tasks and done.entry["outcomes"]["c1"]["status"] == 409


def test_a_wrong_handoff_code_still_counts_though_the_delivery_is_refused() -> None:
    board = board_with(("v1", "g3", 1))
    board.order_open(facts("o1"), T0)
    board.accept("o1", "v1", T0 + timedelta(seconds=1))
    board.savepoint()
    with pytest.raises(Rejection) as refused:
        board.deliver("o1", "v1", "0000", None, T0 + timedelta(seconds=2))
    assert refused.value.counts and board.tasks["o1"].wrong_codes == 1


def test_a_command_answered_later_and_sent_again_is_not_decided_twice() -> None:
    # A cancel waits for dispatch's answer (no outcome yet); the producer sends it again.
    def later(docs: Documents, event: Event, now: datetime) -> Decision:
        doc = docs.get(TALLY, "cancels") or {"_id": "cancels", "n": 0}
        docs.put(TALLY, {**doc, "n": doc["n"] + 1})
        return Decision([], None)

    class Later(TallyRules):
        def table(self) -> Mapping[type[Any], Decide[Documents]]:
            return {o.ReviewOrder: later}

    rules = Later()
    docs = Documents("c", {})
    first = step(docs, [review("c1", "x", 0)], rules=rules)
    assert first.entry is not None and first.entry["outcomes"] == {}
    decided = set(first.entry["decided"])
    again = step(
        docs, [review("c1", "x", 1)], 2, rules=rules, decided=decided, offsets=first.offsets
    )
    assert again.entry is None and tallies(docs) == {"cancels": 1}
    # Within one batch too.
    docs = Documents("c", {})
    step(docs, [review("c1", "x", 0), review("c1", "x", 1)], rules=rules)
    assert tallies(docs) == {"cancels": 1}


# --- load == replay: the read models are a faithful cache of the log ------------------------

VOLUNTEERS = ("v1", "v2")
ORDERS = ("o1", "o2", "o3")


def dispatch_input(kind: str, who: str, order: str, i: int) -> Payload:
    """One of the inputs a dispatch owner meets in a day, by name."""
    command = {"command_id": f"k{i}", "order_id": order, "volunteer_id": who}
    made: dict[str, Callable[[], Payload]] = {
        "approved": lambda: v.VolunteerApproved(
            volunteer_id=who, name=who, phone="1", home_grid_id="g3", capacity=2
        ),
        "on duty": lambda: v.ShiftStarted(
            volunteer_id=who, shift_id=f"s{i}", grid_id="g3", until=T0 + timedelta(hours=8)
        ),
        "off duty": lambda: v.ShiftEnded(volunteer_id=who, shift_id=f"s{i}", reason="checked_out"),
        "accepted order": lambda: o.OrderAccepted(order=facts(order)),
        "accept": lambda: d.AcceptOffer(**command),
        "decline": lambda: d.DeclineOffer(**command),
        "pick up": lambda: d.PickUp(**command),
        "deliver": lambda: d.Deliver(**command, handoff_code="1234"),
        "fail": lambda: d.ReportFailure(**command, reason=d.FailureReason.not_home),
        "lapse": lambda: d.ExpireOffer(**command, attempt=1),
        "late": lambda: d.EscalateLateOrder(command_id=f"k{i}", order_id=order),
    }
    return made[kind]()


def replayed(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The read models as the owner derives them from its entries, in order (a removal
    removes; a change replaces)."""
    store: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in entries:
        for change in entry["changes"]:
            docs = store.setdefault(change["collection"], {})
            if change["doc"] is None:
                docs.pop(change["_id"], None)
            else:
                docs[change["_id"]] = change["doc"]
    return {kind: list(docs.values()) for kind, docs in store.items()}


def decided(done: Any) -> tuple[Any, ...]:
    """What a step decided: outcomes, events, and the documents it writes."""
    entry = done.entry or {}
    writes = [(c["collection"], c["_id"], c["doc"]) for c in entry.get("changes", [])]
    return entry.get("outcomes", {}), [e.data for e in done.events], writes


KINDS = ("approved", "on duty", "off duty", "accepted order", "accept", "decline", "pick up",
         "deliver", "fail", "lapse", "late")  # fmt: skip
HISTORY = st.lists(
    st.tuples(st.sampled_from(KINDS), st.sampled_from(VOLUNTEERS), st.sampled_from(ORDERS)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(HISTORY, HISTORY, st.integers(1, 5))
def test_a_board_loaded_from_what_its_entries_derived_decides_as_the_one_that_lived_them(
    history: list[tuple[str, str, str]], after: list[tuple[str, str, str]], chunk: int
) -> None:
    rules = DispatchRules(120, 600)
    live = rules.restore("c", {})
    live.take_changes()
    define = o.CommunityDefined(community_id="c", name="C", grids=GRIDS)
    inputs = [define] + [dispatch_input(k, w, o_, i) for i, (k, w, o_) in enumerate(history)]
    items = [
        Record("t/0", i, Event(source="/t", community_id="c", data=p)) for i, p in enumerate(inputs)
    ]
    entries = []
    for at in range(0, len(items), chunk):
        done = step(live, items[at : at + chunk], len(entries) + 1, rules=rules)
        if done.entry is not None:
            entries.append(done.entry)
    loaded = rules.restore("c", replayed(entries))
    loaded.take_changes()
    assert loaded.model_dump(mode="json") == live.model_dump(mode="json")
    # And it goes on the same: the indexes rebuilt on load (who is free, who waits) are
    # those the living board kept up.
    more = [dispatch_input(k, w, o_, 100 + i) for i, (k, w, o_) in enumerate(after)]
    for i, payload in enumerate(more):
        item = Record("t/0", len(items) + i, Event(source="/t", community_id="c", data=payload))
        a = step(live, [item], 1000 + i, rules=rules)
        b = step(loaded, [item], 1000 + i, rules=rules)
        assert decided(a) == decided(b)
    assert loaded.model_dump(mode="json") == live.model_dump(mode="json")


# --- ids unique only within a community -------------------------------------------------------


def test_a_cadre_registered_in_two_communities_is_stored_once_in_each() -> None:
    stored = []
    for community in ("A", "B"):
        docs = Documents(community, {}, scoped={"volunteers": "volunteer_id"})
        docs.put("volunteers", {"_id": "v1", "name": "Li"})
        assert docs.get("volunteers", "v1")["_id"] == "v1"  # the rules see the bare id
        stored += docs.take_changes()
    assert [(c.collection, c.doc_id, c.doc["volunteer_id"]) for c in stored] == [  # type: ignore[index]
        ("volunteers", "A:v1", "v1"),
        ("volunteers", "B:v1", "v1"),
    ]
    again = Documents("A", {"volunteers": [stored[0].doc]}, scoped={"volunteers": "volunteer_id"})  # type: ignore[list-item]
    assert again.get("volunteers", "v1")["name"] == "Li"  # type: ignore[index]


def test_a_cadre_stored_under_a_bare_id_moves_to_the_communitys_key_at_its_next_change() -> None:
    legacy = {"_id": "v1", "community_id": "A", "name": "Li", "shifts": 0}
    docs = Documents("A", {"volunteers": [legacy]}, scoped={"volunteers": "volunteer_id"})
    assert docs.get("volunteers", "v1") == legacy
    docs.put("volunteers", {**legacy, "shifts": 1})
    moved = docs.take_changes()
    assert [(c.doc_id, c.doc is None) for c in moved] == [("A:v1", False), ("v1", True)]
    docs.put("volunteers", {**legacy, "shifts": 2})
    assert [c.doc_id for c in docs.take_changes()] == ["A:v1"]  # moved once
