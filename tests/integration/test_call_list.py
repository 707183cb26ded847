"""The call list's "called up to here" against the real store: messages stored in the same
millisecond (one batch of events) still have one order, the listing's and the marking's."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from services.notify import api
from services.notify.handlers import Sequence
from services.notify.inbound import KeypadReplies
from shared.auth import Principal, Role


async def test_a_call_marks_done_what_it_told_and_not_a_message_of_the_same_millisecond(
    db: Any,
) -> None:
    at = datetime(2026, 12, 4, 9, 30, 0, 123000, tzinfo=UTC)
    staff = Principal(subject="staff-1", role=Role.staff, community_id="datong")
    for n in (8, 9, 10, 11):  # entry numbers: "10" sorts before "9" as text
        await db["call_list"].insert_one(
            {
                "_id": f"orders:datong:{n}:0:household:hh-1",
                "community_id": "datong",
                "household_id": "hh-1",
                "phone": "13900000000",
                "grid_id": "g1",
                "address": "大同花园 1-1-101",
                "card_code": "33FY3K",
                "order_id": "o-1",
                "kind": "task.picked_up",
                "message": f"第{n}条",
                "created_at": at,
            }
        )
    listed = await api.call_list(staff, db)
    (call,) = listed["households"]
    told = [m["id"] for m in call["messages"]]
    assert sorted(told) == sorted(f"orders:datong:{n}:0:household:hh-1" for n in (8, 9, 10, 11))

    done = await api.household_called("hh-1", api.CalledIn(upto=told[1]), staff, db)

    assert done["done"] == 2
    (rest,) = (await api.call_list(staff, db))["households"]
    assert [m["id"] for m in rest["messages"]] == told[2:]


async def test_a_call_tells_a_households_messages_in_the_order_they_happened(db: Any) -> None:
    # One batch of events stores its messages in one millisecond, and their ids (entry
    # numbers: "10" sorts before "9" as text) say nothing of their order: the stamp does.
    at = datetime(2026, 12, 4, 9, 30, 0, 123000, tzinfo=UTC)
    staff = Principal(subject="staff-1", role=Role.staff, community_id="datong")
    arrived = [(9, "task.picked_up"), (10, "task.delivered"), (11, "order.arrived")]
    for stamp, (n, kind) in enumerate(arrived, 1):
        await db["call_list"].insert_one(
            {
                "_id": f"dispatch:datong:{n}:0:household:hh-2",
                "community_id": "datong",
                "household_id": "hh-2",
                "phone": "13900000000",
                "grid_id": "g1",
                "address": "大同花园 1-1-102",
                "card_code": "33FY3K",
                "order_id": "o-2",
                "kind": kind,
                "message": kind,
                "created_at": at,
                "seq": f"{1_700_000_000_000_000_000 + stamp:020d}",
            }
        )
    (call,) = (await api.call_list(staff, db))["households"]
    assert [m["kind"] for m in call["messages"]] == [kind for _, kind in arrived]

    done = await api.household_called(
        "hh-2", api.CalledIn(upto=call["messages"][1]["id"]), staff, db
    )

    assert done["done"] == 2
    (rest,) = (await api.call_list(staff, db))["households"]
    assert [m["kind"] for m in rest["messages"]] == ["order.arrived"]


def told_entry(household_id: str, seq: str) -> dict[str, Any]:
    return {
        "_id": f"orders:datong:5:0:household:{household_id}",
        "community_id": "datong",
        "household_id": household_id,
        "phone": "13900000003",
        "grid_id": "g1",
        "address": "大同花园 1-1-103",
        "card_code": "33FY3K",
        "order_id": "o-3",
        "kind": "task.picked_up",
        "message": "配送中",
        "created_at": datetime.now(UTC),
        "seq": seq,
    }


async def test_asking_to_be_called_after_the_list_was_read_is_not_marked_done_by_that_call(
    db: Any,
) -> None:
    """Staff read the list and dial; meanwhile the resident asks to be called back (in the
    app, or by replying 9). Marking the call done marks what staff saw, not the new ask."""
    staff = Principal(subject="staff-1", role=Role.staff, community_id="datong")
    owner = SimpleNamespace(sequence=Sequence())
    household = {"_id": "hh-3", "community_id": "datong", "phone": "13900000003", "grid_id": "g1"}

    async def household_of(_: str) -> dict[str, Any]:
        return household

    owner.household = household_of
    await db["call_list"].insert_one(told_entry("hh-3", owner.sequence.next()))
    (call,) = (await api.call_list(staff, db))["households"]
    seen = call["messages"][-1]["id"]

    resident = Principal(
        subject="r", role=Role.resident, community_id="datong", household_id="hh-3"
    )
    app = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(owner=owner)))
    await api.call_me(app, resident, db)  # type: ignore[arg-type]
    await KeypadReplies(db, None, owner)._from_household(household, "9", "sms-1")  # type: ignore[arg-type]

    done = await api.household_called("hh-3", api.CalledIn(upto=seen), staff, db)

    assert done["done"] == 1
    (rest,) = (await api.call_list(staff, db))["households"]
    assert [m["kind"] for m in rest["messages"]] == ["call_me", "call_me"]
