"""Orders' rules as the owner feeds them: a community's inputs in, events and outcomes out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.orders.handlers import HOUSEHOLDS, ORDERS, Orderbook, OrdersRules
from shared.contracts import dispatch as d
from shared.contracts import orders as o
from shared.events import Event
from shared.owner import Decision, Rejection

T0 = datetime(2022, 5, 1, 8, 0, tzinfo=UTC)
RULES = OrdersRules().table()
GRID = o.Grid(grid_id="g1", name="G1", grid_worker="Wang", grid_worker_phone="13800000001")


def decide(book: Orderbook, payload: Any) -> Decision:
    event = Event(source="/tests", community_id="datong", data=payload)
    return RULES[type(payload)](book, event, T0)


def row(line: int, compound: str = "Datong Garden", room: str = "401") -> o.HouseholdInput:
    address = o.Address(compound=compound, building="3", unit="2", room=room)
    return o.HouseholdInput(line=line, address=address, grid_id="g1", phone="13912345678")


def community(**policy: Any) -> Orderbook:
    book = Orderbook("datong", {})
    decide(
        book,
        o.DefineCommunity(
            command_id="def",
            actor="ops",
            community_id="datong",
            name="Datong",
            grids=[GRID],
            policy=o.CommunityPolicy(**policy),
        ),
    )
    decide(book, o.RegisterHouseholds(command_id="reg", actor="staff", households=[row(2)]))
    book.take_changes()
    return book


def place(book: Orderbook, command_id: str = "c1", **extra: Any) -> Decision:
    household_id = next(iter(book.values(HOUSEHOLDS)))["_id"]
    fields = {"category": o.Category.medicine, "items": "insulin", "channel": "app"}
    return decide(
        book,
        o.PlaceOrder(
            command_id=command_id,
            actor="resident",
            household_id=household_id,
            role="resident",
            **(fields | extra),
        ),
    )


def test_an_address_that_differs_only_in_letter_case_is_the_same_household() -> None:
    book = community()
    decision = decide(
        book,
        o.RegisterHouseholds(
            command_id="again",
            actor="staff",
            households=[row(2, "datong garden"), row(3, " DATONG GARDEN "), row(4, room="402")],
        ),
    )
    assert decision.outcome is not None and decision.outcome.body is not None
    assert [r["line"] for r in decision.outcome.body["already"]] == [2, 3]
    assert [r["line"] for r in decision.outcome.body["imported"]] == [4]


def test_every_household_gets_its_own_contact_card_code() -> None:
    book = community()
    rows = [row(i, room=str(i)) for i in range(3, 300)]
    decide(book, o.RegisterHouseholds(command_id="many", actor="staff", households=rows))
    codes = [h["card_code"] for h in book.values(HOUSEHOLDS)]
    assert len(codes) == len(set(codes)) == 298


def test_an_accepted_order_is_announced_and_stored_in_one_decision() -> None:
    book = community()
    decision = place(book)
    assert [type(e) for e in decision.events] == [o.OrderReceived, o.OrderAccepted]
    changed = book.take_changes()
    assert [(c.collection, c.doc["status"]) for c in changed if c.doc] == [(ORDERS, "accepted")]


def test_the_same_request_again_is_held_as_a_likely_duplicate() -> None:
    book = community()
    first = place(book, "c1")
    second = place(book, "c2")
    assert second.outcome is not None and second.outcome.body is not None
    assert second.outcome.body["status"] == "held"
    assert first.outcome is not None and first.outcome.body is not None
    assert second.outcome.body["duplicate_of"] == first.outcome.body["order_id"]


def test_an_idempotency_key_returns_the_first_order_and_refuses_another_body() -> None:
    book = community()
    first = place(book, "c1", idempotency_key="walk-1", request_hash="h1")
    again = place(book, "c2", idempotency_key="walk-1", request_hash="h1")
    assert again.events == []
    assert again.outcome == first.outcome
    with pytest.raises(Rejection) as refused:
        place(book, "c3", idempotency_key="walk-1", request_hash="other")
    assert refused.value.status == 422


def test_a_refused_cancel_changes_nothing() -> None:
    book = community()
    order_id = place(book).outcome.body["order_id"]  # type: ignore[union-attr]
    ref = d.OrderRef(order_id=order_id, household_id="h", grid_id="g1")
    decide(book, d.TaskAssigned(order=ref, volunteer_id="v1", volunteer_name="Li"))
    decide(book, d.TaskPickedUp(order=ref, volunteer_id="v1"))
    book.take_changes()
    with pytest.raises(Rejection):
        decide(
            book,
            o.CancelOrder(command_id="x", actor="resident", order_id=order_id, role="resident"),
        )
    assert book.take_changes() == []


def test_dispatch_facts_move_the_order_and_tell_the_household_each_time() -> None:
    book = community()
    order_id = place(book).outcome.body["order_id"]  # type: ignore[union-attr]
    ref = d.OrderRef(order_id=order_id, household_id="h", grid_id="g1")
    said = [
        decide(book, fact).events
        for fact in (
            d.TaskAssigned(order=ref, volunteer_id="v1", volunteer_name="Li"),
            d.TaskPickedUp(order=ref, volunteer_id="v1"),
            d.TaskDelivered(order=ref, volunteer_id="v1", proof="handoff_code"),
        )
    ]
    assert [e[0].status for e in said] == ["assigned", "picked_up", "delivered"]  # type: ignore[attr-defined]
    assert book.order(order_id)["status"] == "delivered"
    # A fact about an order that has moved on changes nothing.
    assert decide(book, d.TaskPickedUp(order=ref, volunteer_id="v1")).events == []


def test_a_cancel_of_an_order_dispatch_holds_is_asked_of_dispatch_and_answered_by_it() -> None:
    book = community()
    order_id = place(book).outcome.body["order_id"]  # type: ignore[union-attr]
    cancel = o.CancelOrder(command_id="x1", actor="resident", order_id=order_id, role="resident")
    asked = decide(book, cancel)
    assert [type(e) for e in asked.events] == [o.OrderCancelRequested]
    assert asked.outcome is None  # not decided yet: dispatch knows the task's state
    with pytest.raises(Rejection):  # one question at a time
        decide(book, cancel.model_copy(update={"command_id": "x2"}))

    ref = d.OrderRef(order_id=order_id, household_id="h", grid_id="g1")
    done = decide(book, d.TaskCancelled(order=ref, by_role="resident"))
    assert [type(e) for e in done.events] == [o.OrderCancelled]
    assert done.answers["x1"].status == 200
    assert book.order(order_id)["status"] == "cancelled"


def test_a_cancel_dispatch_refuses_is_answered_409_and_the_order_goes_on() -> None:
    book = community()
    order_id = place(book).outcome.body["order_id"]  # type: ignore[union-attr]
    decide(book, o.CancelOrder(command_id="x1", actor="staff", order_id=order_id, role="staff"))
    refused = decide(book, d.CancelRefused(order_id=order_id, reason="no longer open"))
    assert refused.events == []
    assert refused.answers["x1"].status == 409
    assert book.order(order_id)["status"] == "accepted"
    assert book.order(order_id)["cancel_requested"] is None


def test_a_redefinition_that_drops_a_grid_with_households_is_refused_and_changes_nothing() -> None:
    book = community()
    other = o.Grid(grid_id="g2", name="G2", grid_worker="Li", grid_worker_phone="13800000002")
    redefine = o.DefineCommunity(
        command_id="def2",
        actor="ops",
        community_id="datong",
        name="Datong",
        grids=[other],
        policy=o.CommunityPolicy(),
    )
    with pytest.raises(Rejection) as refused:
        decide(book, redefine)
    assert refused.value.status == 409 and "g1 (1 households)" in refused.value.reason
    assert book.take_changes() == []
    # Adding a grid beside the ones in use is fine.
    both = redefine.model_copy(update={"grids": [GRID, other]})
    assert [type(e).__name__ for e in decide(book, both).events] == ["CommunityDefined"]


def test_the_book_gives_its_orders_newest_first_as_placed_and_as_restored() -> None:
    book = community(duplicate_window_minutes=0)
    ids = [place(book, f"c{i}", items=f"item {i}").outcome.body["order_id"] for i in range(3)]  # type: ignore[union-attr]
    assert [d["_id"] for d in book.newest_first()] == ids[::-1]
    # Restored from documents in any order: by when they were placed.
    stored = [
        {**book.order(order_id), "placed_at": T0 + timedelta(minutes=i)}
        for i, order_id in enumerate(ids)
    ]
    restored = Orderbook("datong", {ORDERS: stored[::-1]})
    assert [d["_id"] for d in restored.newest_first()] == ids[::-1]


def test_an_import_sent_again_reports_rows_already_there_and_adds_none() -> None:
    # A resumed import (the first answer lost, a chunk still queued): the same rows again.
    book = community()
    first = decide(
        book, o.RegisterHouseholds(command_id="a", actor="staff", households=[row(3, room="402")])
    )
    again = decide(
        book,
        o.RegisterHouseholds(
            command_id="b", actor="staff", households=[row(3, room="402"), row(4, room="403")]
        ),
    )
    assert first.outcome and again.outcome and again.outcome.body
    (done,) = first.outcome.body["imported"]  # type: ignore[index]
    assert again.outcome.body["already"] == [
        {"line": 3, "household_id": done["household_id"], "card_code": done["card_code"]}
    ]
    assert [r["line"] for r in again.outcome.body["imported"]] == [4]
    assert len(list(book.values(HOUSEHOLDS))) == 3
    # The same flat with another phone is a conflict to look at, not the same household.
    other = row(5, room="402").model_copy(update={"phone": "13700000009"})
    conflict = decide(book, o.RegisterHouseholds(command_id="c", actor="staff", households=[other]))
    assert conflict.outcome and conflict.outcome.body
    (refused,) = conflict.outcome.body["rejected"]
    assert "already registered" in refused["reason"]


def test_a_reopened_order_has_a_new_handoff_code_and_nothing_left_of_its_first_life() -> None:
    book = community()
    placed = place(book)
    assert placed.outcome and placed.outcome.body
    order_id = placed.outcome.body["order_id"]
    old_code = book.order(order_id)["handoff_code"]
    order = book.order(order_id)
    book.put(
        ORDERS,
        {
            **order,
            "status": "failed",
            "volunteer_id": "v1",
            "volunteer_name": "Li",
            "failure": {"reason": "no_answer", "note": None},
            "hold_reason": "possible duplicate",
            "cancel_reason": "x",
        },
    )
    decide(book, o.ReopenOrder(command_id="re", actor="staff", order_id=order_id))
    again = book.order(order_id)
    assert again["handoff_code"] != old_code  # five more guesses would open the old one
    assert again["status"] == "accepted"
    assert [again.get(k) for k in ("volunteer_id", "volunteer_name", "failure", "hold_reason")] == [
        None
    ] * 4


def test_a_reissued_card_is_announced_so_others_follow_the_new_code() -> None:
    book = community()
    household = next(iter(book.values(HOUSEHOLDS)))
    decision = decide(
        book, o.ReissueCard(command_id="r", actor="staff", household_id=household["_id"])
    )
    (reissued,) = decision.events
    assert isinstance(reissued, o.HouseholdCardReissued)
    assert reissued.retired_card_code == household["card_code"] != reissued.card_code
