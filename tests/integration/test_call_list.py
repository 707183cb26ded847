"""The call list's "called up to here" against the real store: messages stored in the same
millisecond (one batch of events) still have one order, the listing's and the marking's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.notify import api
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
