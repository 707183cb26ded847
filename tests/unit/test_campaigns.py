"""Door-knock campaigns (不漏一户), as orders' owner decides them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.orders import campaigns
from services.orders.handlers import HOUSEHOLDS, ORDERS, Orderbook, OrdersRules
from shared.contracts import campaigns as c
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.events import Event
from shared.owner import Decision, Rejection

T0 = datetime(2022, 5, 28, 8, 0, tzinfo=UTC)
RULES = OrdersRules().table()
GRIDS = [
    o.Grid(grid_id=g, name=g, grid_worker=f"Worker {g}", grid_worker_phone="13800000001")
    for g in ("g1", "g2")
]


def decide(book: Orderbook, payload: Any, at: datetime = T0) -> Decision:
    event = Event(source="/tests", community_id="datong", data=payload)
    return RULES[type(payload)](book, event, at)


def household(line: int, grid: str, building: str, unit: str, room: str, flags: str = "") -> Any:
    address = o.Address(compound="Datong Garden", building=building, unit=unit, room=room)
    return o.HouseholdInput(
        line=line,
        address=address,
        grid_id=grid,
        phone="13912345678",
        flags=[o.HouseholdFlag(f) for f in flags.split(";") if f],
    )


def community() -> Orderbook:
    book = Orderbook("datong", {})
    decide(
        book,
        o.DefineCommunity(
            command_id="def",
            actor="ops",
            community_id="datong",
            name="Datong",
            grids=GRIDS,
            policy=o.CommunityPolicy(),
        ),
    )
    rows = [
        household(1, "g1", "10", "1", "101"),
        household(2, "g1", "9", "2", "201"),
        household(3, "g1", "9", "1", "102", flags="elderly_alone"),
        household(4, "g1", "9", "1", "101"),
        household(5, "g2", "1", "1", "101"),
    ]
    decide(book, o.RegisterHouseholds(command_id="reg", actor="staff", households=rows))
    decide(
        book,
        v.VolunteerApproved(
            volunteer_id="li",
            name="Li",
            phone="13700000001",
            home_grid_id="g1",
            skills=["delivery"],
            capacity=1,
        ),
    )
    decide(
        book,
        v.ShiftStarted(
            volunteer_id="li", shift_id="s1", grid_id="g1", until=T0 + timedelta(hours=4)
        ),
    )
    return book


def by_room(book: Orderbook) -> dict[str, str]:
    return {
        f"{h['address']['building']}-{h['address']['room']}": h["_id"]
        for h in book.values(HOUSEHOLDS)
    }


def start(book: Orderbook, grids: list[str] | None = None) -> dict[str, Any]:
    decision = decide(
        book,
        c.StartCampaign(
            command_id="start1",
            actor="staff",
            campaign_id="cmp_1",
            title="Daily health check",
            grid_ids=grids or [],
            revisit_after_seconds=3600,
        ),
    )
    assert decision.outcome is not None and decision.outcome.status == 201
    return book.get("campaigns", "cmp_1") or {}


def li_walks_the_first_list(book: Orderbook, grids: list[str] | None = None) -> None:
    """The campaign starts and Li, on duty in grid 1, claims its first walk list."""
    first = next(iter(start(book, grids)["lists"]))
    take = c.TakeWalkList(
        command_id="t",
        actor="li",
        campaign_id="cmp_1",
        list_id=first,
        volunteer_id="li",
        role="volunteer",
    )
    decide(book, take)


def doors(
    book: Orderbook,
    *visits: tuple[str, c.Outcome, list[c.Need]],
    at: datetime = T0,
    who: str | None = "li",
) -> Decision:
    rooms = by_room(book)
    return decide(
        book,
        c.RecordVisits(
            command_id=f"visit-{at.isoformat()}-{len(visits)}",
            actor=who or "staff",
            campaign_id="cmp_1",
            volunteer_id=who,
            doors=[
                c.Door(household_id=rooms[r], outcome=out, needs=needs) for r, out, needs in visits
            ],
        ),
        at,
    )


def test_walk_lists_go_building_by_building_in_walking_order() -> None:
    book = community()
    campaign = start(book)
    rooms = {h: r for r, h in by_room(book).items()}
    lists = [[rooms[h] for h in w["households"]] for w in campaign["lists"].values()]
    # Building 9 before 10 (numbers as numbers), unit 1 before 2, room by room.
    assert lists == [["9-101", "9-102", "9-201"], ["10-101"], ["1-101"]]
    only_g2 = start(community(), grids=["g2"])
    assert len(only_g2["list_of"]) == 1


def test_a_cadre_on_duty_takes_lists_up_to_their_capacity_and_records_only_their_doors() -> None:
    book = community()
    first, second, _ = start(book)["lists"]
    take = lambda list_id, vid="li", role="volunteer": decide(  # noqa: E731
        book,
        c.TakeWalkList(
            command_id=f"t-{list_id}-{vid}",
            actor=vid,
            campaign_id="cmp_1",
            list_id=list_id,
            volunteer_id=vid,
            role=role,
        ),
    )
    assert take(first).outcome.status == 200  # type: ignore[union-attr]
    with pytest.raises(Rejection, match="capacity"):
        take(second)
    with pytest.raises(Rejection, match="not on duty"):
        take(second, vid="zhao", role="staff")
    with pytest.raises(Rejection, match="do not hold"):
        doors(book, ("10-101", c.Outcome.answered, []))
    assert doors(book, ("9-101", c.Outcome.answered, [])).outcome.status == 200  # type: ignore[union-attr]


def test_a_need_at_the_door_is_an_order_in_the_same_decision() -> None:
    book = community()
    li_walks_the_first_list(book)
    decision = doors(book, ("9-102", c.Outcome.answered, [c.Need.medicine, c.Need.food]))
    kinds = [e.type for e in decision.events]
    assert kinds == [
        "doorstep.campaign.door_visited.v1",
        "doorstep.order.received.v1",
        "doorstep.order.accepted.v1",
        "doorstep.order.received.v1",
        "doorstep.order.accepted.v1",
    ]
    orders = list(book.values(ORDERS))
    assert {o["category"] for o in orders} == {"medicine", "groceries"}
    assert all(
        o["channel"] == "door_knock" and o["household_id"] == by_room(book)["9-102"] for o in orders
    )
    assert orders[0]["priority"] > 60  # elderly living alone: above plain medicine


def test_no_answer_doors_come_back_after_the_revisit_time_and_closing_early_needs_a_reason() -> (
    None
):
    book = community()
    li_walks_the_first_list(book, grids=["g1"])
    doors(
        book,
        ("9-101", c.Outcome.answered, []),
        ("9-102", c.Outcome.no_answer, []),
        ("9-201", c.Outcome.refused, []),
    )
    campaign = book.get("campaigns", "cmp_1") or {}
    visits = campaigns.visits_of(book, campaign)
    assert campaigns.coverage(campaign, visits, T0)["total"] | {} == {
        "households": 4,
        "reached": 2,
        "no_answer": 1,
        "handed_over": 0,
        "not_yet": 1,
        "percent": 50.0,
    }
    assert campaigns.revisits(campaign, visits, T0 + timedelta(minutes=59)) == []
    (due,) = campaigns.revisits(campaign, visits, T0 + timedelta(hours=1))
    assert due["household_id"] == by_room(book)["9-102"] and due["attempts"] == 1
    with pytest.raises(Rejection, match="2 households are not reached"):
        decide(book, c.CloseCampaign(command_id="close", actor="staff", campaign_id="cmp_1"))
    later = T0 + timedelta(hours=1)
    doors(book, ("9-102", c.Outcome.answered, []), at=later)
    doors(book, ("10-101", c.Outcome.answered, []), who=None, at=later)  # staff at the door
    visits = campaigns.visits_of(book, campaign)
    assert campaigns.coverage(campaign, visits, later)["total"]["percent"] == 100.0
    closed = decide(book, c.CloseCampaign(command_id="close2", actor="staff", campaign_id="cmp_1"))
    assert closed.events[0].type == "doorstep.campaign.closed.v1"
    with pytest.raises(Rejection, match="closed"):
        doors(book, ("9-101", c.Outcome.answered, []), at=later)


def test_closing_early_with_a_reason_is_recorded_and_a_silent_door_goes_to_the_grid_worker() -> (
    None
):
    book = community()
    start(book, grids=["g2"])
    doors(book, ("1-101", c.Outcome.no_answer, []), who=None)
    handed = decide(
        book,
        c.HandToGridWorker(
            command_id="h", actor="staff", campaign_id="cmp_1", household_id=by_room(book)["1-101"]
        ),
    )
    assert handed.outcome.body == {"handed_to": "Worker g2"}  # type: ignore[union-attr]
    closed = decide(
        book,
        c.CloseCampaign(
            command_id="x", actor="staff", campaign_id="cmp_1", reason="moved to tomorrow's round"
        ),
    )
    assert closed.events[0].not_reached == 1  # type: ignore[attr-defined]
    assert (book.get("campaigns", "cmp_1") or {})["close_reason"] == "moved to tomorrow's round"


def test_exceptions_name_silent_doors_unserved_needs_and_elderly_alone_without_contact() -> None:
    book = community()
    li_walks_the_first_list(book, grids=["g1"])
    rooms = by_room(book)
    campaign = book.get("campaigns", "cmp_1") or {}

    def listed() -> dict[str, list[str]]:
        visits = campaigns.visits_of(book, campaign)
        orders = {o["_id"]: o for o in book.values(ORDERS)}
        contacts = campaigns.last_contacts(visits.values(), orders.values())
        found = campaigns.exceptions(
            campaign, visits, book.values(HOUSEHOLDS), orders, contacts, T0, 3
        )
        return {k: [e["household_id"] for e in v] for k, v in found.items()}

    assert listed() == {
        "never_reached": [],
        "needs_not_served": [],
        "elderly_alone_no_contact": [rooms["9-102"]],
    }
    doors(
        book, ("9-101", c.Outcome.no_answer, []), ("9-102", c.Outcome.answered, [c.Need.medicine])
    )
    assert listed() == {
        "never_reached": [rooms["9-101"]],
        "needs_not_served": [rooms["9-102"]],
        "elderly_alone_no_contact": [],  # the door answered: that is contact
    }


def test_addresses_with_circled_or_superscript_digits_sort_without_failing() -> None:
    # People write "①" and "²" in addresses; a round over them must still start.
    rooms = ["10", "2", "30①", "3²", "３", "1A"]
    ordered = sorted(rooms, key=campaigns.natural)
    assert ordered.index("2") < ordered.index("10")  # numbers compare as numbers
    assert ordered.index("３") < ordered.index("10")  # full-width digits too
    assert set(ordered) == set(rooms)
