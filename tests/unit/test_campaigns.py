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


def record(
    book: Orderbook,
    *door_list: c.Door,
    at: datetime = T0,
    command_id: str = "sync",
    who: str | None = "li",
) -> Decision:
    """A phone's sync: the doors as the phone recorded them (ids and times its own)."""
    command = c.RecordVisits(
        command_id=command_id,
        actor=who or "staff",
        campaign_id="cmp_1",
        volunteer_id=who,
        doors=list(door_list),
    )
    return decide(book, command, at)


def door(book: Orderbook, room: str, outcome: c.Outcome, *needs: c.Need, **kw: Any) -> c.Door:
    return c.Door(household_id=by_room(book)[room], outcome=outcome, needs=list(needs), **kw)


def test_a_refused_door_names_every_door_at_fault_in_words() -> None:
    book = community()
    li_walks_the_first_list(book, grids=["g1"])
    batch = [
        door(book, "9-101", c.Outcome.answered, c.Need.medicine),
        door(book, "10-101", c.Outcome.answered),  # on a list Li does not hold
        c.Door(household_id="hh_nobody", outcome=c.Outcome.no_answer),
    ]
    with pytest.raises(Rejection) as refused:
        record(book, *batch)
    assert refused.value.status == 403
    assert "2 of 3 doors refused, nothing recorded" in refused.value.reason
    assert "Datong Garden 10-1-101: on a walk list you do not hold" in refused.value.reason
    assert "hh_nobody: not in this round" in refused.value.reason


def test_the_same_door_record_sent_again_is_one_record_and_one_order() -> None:
    book = community()
    li_walks_the_first_list(book, grids=["g1"])
    needy = door(book, "9-101", c.Outcome.answered, c.Need.medicine, record_id="phone-rec-0001")
    first = record(book, needy, command_id="try-1")
    again = record(book, needy, command_id="try-2")  # the phone's retry after a timeout
    assert first.outcome and again.outcome
    (done,) = first.outcome.body["recorded"]  # type: ignore[index]
    (redone,) = again.outcome.body["recorded"]  # type: ignore[index]
    assert redone["order_ids"] == done["order_ids"] and len(done["order_ids"]) == 1
    assert redone["again"] is True and again.events == []
    assert len(list(book.values(ORDERS))) == 1
    visit = book.get("visits", f"cmp_1:{needy.household_id}") or {}
    assert visit["attempts"] == 1 and visit["needs"] == ["medicine"]


def test_door_records_count_by_when_the_door_was_knocked_not_when_they_arrived() -> None:
    book = community()
    li_walks_the_first_list(book, grids=["g1"])
    nine, ten = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    synced = T0 + timedelta(hours=3, minutes=30)
    record(book, door(book, "9-101", c.Outcome.answered, visited_at=ten), command_id="a")
    # Li's colleague's phone syncs late a "no answer" from an hour earlier: still answered.
    late = door(book, "9-101", c.Outcome.no_answer, visited_at=nine)
    record(book, late, at=synced, command_id="b")
    # A door knocked at 9, synced at 11:30, is due again at 10 (revisit after an hour).
    silent = door(book, "9-102", c.Outcome.no_answer, visited_at=nine)
    record(book, silent, at=synced, command_id="c")
    campaign = book.get("campaigns", "cmp_1") or {}
    visits = campaigns.visits_of(book, campaign)
    assert campaigns.door_state(visits[by_room(book)["9-101"]], timedelta(hours=1), synced) == (
        campaigns.DoorState("reached", False)
    )
    (due,) = campaigns.revisits(campaign, visits, synced)
    assert due["household_id"] == by_room(book)["9-102"] and due["last_at"] == nine
    # A phone whose clock runs ahead does not push a door's time past when it arrived.
    ahead = door(book, "9-201", c.Outcome.no_answer, visited_at=synced + timedelta(days=1))
    record(book, ahead, at=synced, command_id="d")
    assert (book.get("visits", f"cmp_1:{ahead.household_id}") or {})["last_at"] == synced


def test_households_registered_during_a_round_are_in_it() -> None:
    book = community()
    campaign = start(book)
    assert campaigns.coverage(campaign, {}, T0)["total"]["households"] == 5
    rows = [household(6, "g1", "9", "1", "103"), household(7, "g2", "2", "1", "101")]
    decide(book, o.RegisterHouseholds(command_id="late", actor="staff", households=rows))
    campaign = book.get("campaigns", "cmp_1") or {}
    assert campaigns.coverage(campaign, {}, T0)["total"]["households"] == 7
    rooms = {h: r for r, h in by_room(book).items()}
    lists = [[rooms[h] for h in w["households"]] for w in campaign["lists"].values()]
    assert lists[0] == ["9-101", "9-102", "9-103", "9-201"]  # in walking order
    assert ["2-101"] in lists  # a building the round had not: a list of its own


def test_records_made_before_the_round_closed_still_count_and_open_their_orders() -> None:
    book = community()
    li_walks_the_first_list(book, grids=["g1"])
    knocked = T0 + timedelta(minutes=30)
    closing = c.CloseCampaign(command_id="cl", actor="staff", campaign_id="cmp_1", reason="night")
    decide(book, closing, T0 + timedelta(hours=1))
    offline = door(book, "9-101", c.Outcome.answered, c.Need.food, visited_at=knocked)
    synced = record(book, offline, at=T0 + timedelta(hours=2))
    assert [o["category"] for o in book.values(ORDERS)] == ["groceries"]
    assert synced.outcome and synced.outcome.status == 200
    after = door(book, "9-102", c.Outcome.answered, visited_at=T0 + timedelta(hours=1, minutes=5))
    with pytest.raises(Rejection, match="after the round was closed"):
        record(book, after, at=T0 + timedelta(hours=2), command_id="late")


def test_each_need_of_a_door_gets_its_own_items() -> None:
    book = community()
    li_walks_the_first_list(book, grids=["g1"])
    both = door(
        book,
        "9-101",
        c.Outcome.answered,
        c.Need.medicine,
        c.Need.food,
        note="insulin",
        items={c.Need.medicine: "insulin, 2 pens"},
    )
    record(book, both)
    items = {o["category"]: o["items"] for o in book.values(ORDERS)}
    assert items == {"medicine": "insulin, 2 pens", "groceries": "food (door-knock)"}
    one = door(book, "9-102", c.Outcome.answered, c.Need.medicine, note="blood pressure pills")
    record(book, one, command_id="second")
    assert {o["items"] for o in book.values(ORDERS)} >= {"blood pressure pills"}


def test_a_cadre_claims_lists_of_their_grid_only_and_up_to_capacity_across_rounds() -> None:
    book = community()
    campaign = start(book)
    g2_list = next(w for w in campaign["lists"].values() if w["grid_id"] == "g2")["list_id"]
    claim = lambda cid, lid: decide(  # noqa: E731
        book,
        c.TakeWalkList(
            command_id=f"t-{cid}-{lid}",
            actor="li",
            campaign_id=cid,
            list_id=lid,
            volunteer_id="li",
            role="volunteer",
        ),
    )
    with pytest.raises(Rejection, match="grid g2"):
        claim("cmp_1", g2_list)
    claim("cmp_1", next(iter(campaign["lists"])))
    second = c.StartCampaign(
        command_id="start2",
        actor="staff",
        campaign_id="cmp_2",
        title="Evening check",
        grid_ids=["g1"],
        revisit_after_seconds=3600,
    )
    decide(book, second)
    first_of_second = next(iter((book.get("campaigns", "cmp_2") or {})["lists"]))
    with pytest.raises(Rejection, match="capacity"):
        claim("cmp_2", first_of_second)  # Li's capacity is 1, and Li walks one already


def test_staff_see_doors_in_words_hand_an_unknocked_door_over_once_and_contact_spans_rounds() -> (
    None
):
    book = community()
    li_walks_the_first_list(book, grids=["g1"])
    rooms = by_room(book)
    record(book, door(book, "9-101", c.Outcome.no_answer))
    hand = lambda hh, cid: decide(  # noqa: E731
        book,
        c.HandToGridWorker(command_id=cid, actor="staff", campaign_id="cmp_1", household_id=hh),
    )
    hand(rooms["10-101"], "h1")  # nobody knocked there (staff know it is empty)
    with pytest.raises(Rejection, match="already"):
        hand(rooms["10-101"], "h2")  # the grid worker is not told twice
    closing = c.CloseCampaign(command_id="cl", actor="staff", campaign_id="cmp_1", reason="night")
    decide(book, closing)
    campaign = book.get("campaigns", "cmp_1") or {}
    visits = campaigns.visits_of(book, campaign)
    found = campaigns.exceptions(campaign, visits, book.values(HOUSEHOLDS), {}, {}, T0, 3)
    never = {e["household_id"]: e for e in found["never_reached"]}
    assert set(never) == {rooms[r] for r in ("9-101", "9-102", "9-201", "10-101")}
    assert never[rooms["9-101"]]["address"] == "Datong Garden 9-1-101"
    # Yesterday's round reached the elderly neighbour: that is contact, today too.
    yesterday = [{"household_id": rooms["9-102"], "reached_at": T0 - timedelta(days=1)}]
    contacts = campaigns.last_contacts(yesterday, [])
    found = campaigns.exceptions(campaign, visits, book.values(HOUSEHOLDS), {}, contacts, T0, 3)
    assert found["elderly_alone_no_contact"] == []


def test_a_cadre_going_off_duty_lets_go_of_their_lists_and_their_offline_records_still_sync() -> (
    None
):
    book = community()
    li_walks_the_first_list(book, grids=["g1"])
    knocked = T0 + timedelta(minutes=20)
    ended = v.ShiftEnded(volunteer_id="li", shift_id="s1", reason="expired")
    decide(book, ended, T0 + timedelta(hours=1))
    first = next(iter((book.get("campaigns", "cmp_1") or {})["lists"].values()))
    assert first["volunteer_id"] is None and first["holders"] == ["li"]
    offline = door(book, "9-101", c.Outcome.answered, visited_at=knocked)
    synced = record(book, offline, at=T0 + timedelta(hours=2))
    assert synced.outcome and synced.outcome.status == 200
