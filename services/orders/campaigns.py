"""Door-knock campaigns (不漏一户: not one household missed), pure.

A campaign walks every household of the community, or of some grids, building by
building. It is split into walk lists per grid → compound → building (a long building in
parts of ``LIST_SIZE`` doors), each in walking order (unit, then room). A grid worker
gives a list to a cadre on duty, or the cadre claims it; a cadre holds at most their
capacity of unfinished lists. At each door the cadre records answered / no answer /
refused and what the household needs; a need becomes an order in the same decision.
A door that did not answer comes back on the revisit list ``revisit_after`` later, and
again, until it answers or is handed to the grid worker by name. A campaign with doors
not yet reached closes only with a reason, which stays in its record.

Orders owns campaigns: a campaign is a walk over the households orders owns, and the
order a need becomes is orders' to open. Who is on duty comes from volunteers' events.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.orders.book import (
    CADRES,
    CAMPAIGNS,
    COMMUNITIES,
    HOUSEHOLDS,
    VISITS,
    Orderbook,
    open_order,
)
from shared.contracts import campaigns as c
from shared.contracts import volunteers as v
from shared.contracts.base import Payload
from shared.contracts.orders import Category
from shared.decision import Decision, Rejection
from shared.events import Event
from shared.outcome import Outcome

LIST_SIZE = 40  # doors per walk list: what one cadre walks in a couple of hours
REACHED = (c.Outcome.answered.value, c.Outcome.refused.value)
NEED_CATEGORY = {
    c.Need.medicine: Category.medicine,
    c.Need.food: Category.groceries,
    c.Need.medical_attention: Category.visit,
    c.Need.other: Category.other,
}


def natural(text: str) -> tuple[Any, ...]:
    """'Building 10' after 'Building 9': numbers in addresses compare as numbers. A part is
    a number when it is what ``\\d`` matched (decimal digits, full-width ones too); "①" or
    "²" are digits to ``isdigit`` but not to ``int``: text."""
    return tuple(int(p) if p.isdecimal() else p.casefold() for p in re.split(r"(\d+)", text))


def walk_order(household: dict[str, Any]) -> tuple[Any, ...]:
    a = household["address"]
    return (
        household["grid_id"],
        natural(a["compound"]),
        natural(a["building"]),
        natural(a["unit"]),
        natural(a["room"]),
    )


def walk_lists(campaign_id: str, households: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Walk lists by grid → compound → building, each in walking order."""
    lists: dict[str, Any] = {}
    building: tuple[str, str, str] | None = None
    current: dict[str, Any] | None = None
    for household in sorted(households, key=walk_order):
        a = household["address"]
        here = (household["grid_id"], a["compound"], a["building"])
        if here != building or current is None or len(current["households"]) >= LIST_SIZE:
            part = 1 if here != building else current["part"] + 1 if current else 1
            building = here
            list_id = f"{campaign_id}-{len(lists) + 1:04d}"
            current = {
                "list_id": list_id,
                "grid_id": here[0],
                "compound": here[1],
                "building": here[2],
                "part": part,
                "households": [],
                "volunteer_id": None,
            }
            lists[list_id] = current
        current["households"].append(household["_id"])
    return lists


@dataclass(frozen=True)
class DoorState:
    state: str  # not_yet | no_answer | reached | handed_over
    due: bool  # a no-answer door whose revisit time has come


def is_reached(visit: dict[str, Any] | None) -> bool:
    """Someone answered (or refused) at this door in this round, whatever came after."""
    return visit is not None and (
        visit["outcome"] in REACHED or visit.get("reached_at") is not None
    )


def door_state(visit: dict[str, Any] | None, revisit_after: timedelta, now: datetime) -> DoorState:
    if visit is None:
        return DoorState("not_yet", False)
    if is_reached(visit):
        return DoorState("reached", False)
    if visit.get("handed_to"):
        return DoorState("handed_over", False)
    return DoorState("no_answer", visit["last_at"] + revisit_after <= now)


def coverage(
    campaign: dict[str, Any], visits: dict[str, dict[str, Any]], now: datetime
) -> dict[str, Any]:
    """Per grid and per building: reached, no answer, handed over, not yet; and in all."""
    revisit = timedelta(seconds=campaign["revisit_after_seconds"])
    total = {"households": 0, "reached": 0, "no_answer": 0, "handed_over": 0, "not_yet": 0}
    grids: dict[str, dict[str, Any]] = {}
    for walk in campaign["lists"].values():
        grid = grids.setdefault(walk["grid_id"], {**dict.fromkeys(total, 0), "buildings": {}})
        name = f"{walk['compound']} {walk['building']}"
        building = grid["buildings"].setdefault(name, dict.fromkeys(total, 0))
        for household_id in walk["households"]:
            state = door_state(visits.get(household_id), revisit, now).state
            for figures in (total, grid, building):
                figures["households"] += 1
                figures[state] += 1
    share = total["reached"] / total["households"] if total["households"] else 1.0
    return {"total": {**total, "percent": round(100 * share, 1)}, "grids": grids}


def not_reached(campaign: dict[str, Any], visits: dict[str, dict[str, Any]]) -> int:
    return sum(
        1
        for walk in campaign["lists"].values()
        for household_id in walk["households"]
        if not is_reached(visits.get(household_id))
    )


def open_lists_of(
    campaign: dict[str, Any], visits: dict[str, dict[str, Any]], volunteer_id: str
) -> int:
    """Lists a cadre holds with a door still never visited."""
    return sum(
        1
        for walk in campaign["lists"].values()
        if walk["volunteer_id"] == volunteer_id and any(h not in visits for h in walk["households"])
    )


# --- decisions (fed by the shared owner, like every rule in handlers.py) -----------------


def campaign_id_for(command_id: str) -> str:
    return "cmp_" + command_id[:20]


def need_order_id(record_id: str, need: str) -> str:
    """A need's order, named by the door record it was found in (the server's records are
    "{command}:{door}", as the ids were before phones named their records)."""
    return "ord_" + hashlib.sha256(f"{record_id}:{need}".encode()).hexdigest()[:20]


def _campaign(book: Orderbook, campaign_id: str, *, open_only: bool = True) -> dict[str, Any]:
    campaign = book.get(CAMPAIGNS, campaign_id)
    if campaign is None:
        raise Rejection(404, "no such campaign in this community", "Not found")
    if open_only and campaign["status"] != "open":
        raise Rejection(409, "the campaign is closed", "Closed")
    return campaign


def _visit_id(campaign_id: str, household_id: str) -> str:
    return f"{campaign_id}:{household_id}"


def visits_of(book: Orderbook, campaign: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for household_id in campaign["list_of"]:
        visit = book.get(VISITS, _visit_id(campaign["_id"], household_id))
        if visit is not None:
            found[household_id] = visit
    return found


def start_campaign(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, c.StartCampaign)
    community = book.get(COMMUNITIES, book.community_id)
    if community is None:
        raise Rejection(404, "no such community", "Not found")
    unknown = set(cmd.grid_ids) - {g["grid_id"] for g in community["grids"]}
    if unknown:
        raise Rejection(422, f"no such grids: {sorted(unknown)}", "Invalid request")
    households = [
        h for h in book.values(HOUSEHOLDS) if not cmd.grid_ids or h["grid_id"] in cmd.grid_ids
    ]
    if not households:
        raise Rejection(409, "no households to visit in these grids", "Nothing to visit")
    lists = walk_lists(cmd.campaign_id, households)
    campaign = book.put(
        CAMPAIGNS,
        {
            "_id": cmd.campaign_id,
            "title": cmd.title,
            "grid_ids": cmd.grid_ids,
            "status": "open",
            "started_at": now,
            "started_by": cmd.actor,
            "revisit_after_seconds": cmd.revisit_after_seconds,
            "lists": lists,
            "list_of": {h: w["list_id"] for w in lists.values() for h in w["households"]},
        },
    )
    started = c.CampaignStarted(
        campaign_id=cmd.campaign_id,
        title=cmd.title,
        grid_ids=cmd.grid_ids,
        household_count=len(households),
        walk_list_count=len(lists),
    )
    return Decision([started], Outcome.ok(campaign_view(campaign), 201))


def take_walk_list(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, c.TakeWalkList)
    campaign = _campaign(book, cmd.campaign_id)
    walk = campaign["lists"].get(cmd.list_id)
    if walk is None:
        raise Rejection(404, "no such walk list", "Not found")
    if cmd.role == "volunteer" and walk["volunteer_id"] not in (None, cmd.volunteer_id):
        raise Rejection(409, "another cadre holds this walk list", "Taken")
    cadre = book.get(CADRES, cmd.volunteer_id)
    if cadre is None or not cadre.get("on_duty"):
        raise Rejection(409, "the cadre is not on duty: check in first", "Not on duty")
    if cmd.role == "volunteer" and cadre["on_duty"] != walk["grid_id"]:
        raise Rejection(
            409, f"the list is in grid {walk['grid_id']}; you are on duty in another", "Other grid"
        )
    # Every open round counts: two rounds at once do not double what a cadre can walk.
    held = sum(
        open_lists_of(other, visits_of(book, other), cmd.volunteer_id)
        for other in book.values(CAMPAIGNS)
        if other["status"] == "open"
    )
    if walk["volunteer_id"] != cmd.volunteer_id and held >= cadre["capacity"]:
        raise Rejection(409, f"the cadre already walks {held} lists: their capacity", "At capacity")
    holders = [*walk.get("holders", []), cmd.volunteer_id]
    taken_walk = {**walk, "volunteer_id": cmd.volunteer_id, "holders": list(dict.fromkeys(holders))}
    lists = {**campaign["lists"], cmd.list_id: taken_walk}
    campaign = book.put(CAMPAIGNS, {**campaign, "lists": lists})
    before = walk["volunteer_id"]
    taken = c.WalkListTaken(
        campaign_id=cmd.campaign_id,
        list_id=cmd.list_id,
        volunteer_id=cmd.volunteer_id,
        grid_id=walk["grid_id"],
        from_volunteer_id=before if before not in (None, cmd.volunteer_id) else None,
        building=f"{walk['compound']} {walk['building']}",
    )
    return Decision([taken], Outcome.ok(lists[cmd.list_id]))


def _door_fault(
    book: Orderbook, campaign: dict[str, Any], cmd: c.RecordVisits, door: c.Door, now: datetime
) -> tuple[int, str] | None:
    """Why a door's record cannot be taken (status, words), else None."""
    list_id = campaign["list_of"].get(door.household_id)
    if list_id is None:
        return 404, "not in this round"
    walk = campaign["lists"][list_id]
    if cmd.volunteer_id is not None and cmd.volunteer_id not in (
        walk["volunteer_id"],
        *walk.get("holders", ()),
    ):
        return 403, "on a walk list you do not hold"
    if campaign["status"] != "open" and not (
        door.visited_at is not None and when(door.visited_at, now) <= campaign["closed_at"]
    ):
        return 409, "recorded after the round was closed"
    return None


def when(at: datetime | None, now: datetime) -> datetime:
    """When a door was knocked: the phone's time (never after it reached us), else now."""
    if at is None:
        return now
    if at.tzinfo is None:  # the contract's older records: UTC
        at = at.replace(tzinfo=UTC)
    return min(at, now)


def need_items(door: c.Door, need: c.Need) -> str:
    """What a need's order is for: as said for that need; the note when it is the only
    need (a note about insulin is not the food order's items); else the need's name."""
    said = door.items.get(need)
    if said:
        return said
    if door.note and len(set(door.needs)) == 1:
        return door.note
    return f"{need.value.replace('_', ' ')} (door-knock)"


def record_visits(book: Orderbook, event: Event, now: datetime) -> Decision:
    """A cadre's door records, as their phone sends them (maybe late, maybe again): all
    of them or none; each record once (by the id the phone made); the door's state by
    when it was knocked, not when the record arrived."""
    cmd = event.data
    assert isinstance(cmd, c.RecordVisits)
    campaign = _campaign(book, cmd.campaign_id, open_only=False)
    faults = [
        (fault, door)
        for door in cmd.doors
        if (fault := _door_fault(book, campaign, cmd, door, now)) is not None
    ]
    if faults:
        words = "; ".join(
            f"{_address(book, door.household_id)}: {why}" for (_, why), door in faults
        )
        raise Rejection(
            faults[0][0][0],
            f"{len(faults)} of {len(cmd.doors)} doors refused, nothing recorded — {words}",
            "Doors refused",
        )
    events: list[Payload] = []
    recorded = []
    for index, door in enumerate(cmd.doors):
        record_id = door.record_id or f"{cmd.command_id}:{index}"
        visit_id = _visit_id(cmd.campaign_id, door.household_id)
        before = book.get(VISITS, visit_id) or {}
        records: dict[str, Any] = before.get("records", {})
        if record_id in records:  # sent again: recorded once, answered the same
            recorded.append(
                {
                    "household_id": door.household_id,
                    "record_id": record_id,
                    "order_ids": records[record_id]["order_ids"],
                    "again": True,
                }
            )
            continue
        household = book.get(HOUSEHOLDS, door.household_id)
        assert household is not None  # a campaign's households are the book's
        at = when(door.visited_at, now)
        order_ids: list[str] = []
        opened_here: list[Payload] = []
        if door.outcome is c.Outcome.answered:
            for need in dict.fromkeys(door.needs):  # once each, in the order given
                order, opened = open_order(
                    book,
                    household,
                    order_id=need_order_id(record_id, need.value),
                    category=NEED_CATEGORY[need],
                    items=need_items(door, need),
                    channel="door_knock",
                    actor=cmd.actor,
                    role="volunteer" if cmd.volunteer_id else "staff",
                    priority=None,
                    now=now,
                )
                order_ids.append(order["_id"])
                opened_here.extend(opened)
        reached = door.outcome.value in REACHED
        latest = before.get("last_at")
        newest = latest is None or at >= latest  # the latest knock says how the door is
        reached_at = before.get("reached_at")
        if reached and (reached_at is None or at < reached_at):
            reached_at = at
        book.put(
            VISITS,
            {
                **before,
                "_id": visit_id,
                "campaign_id": cmd.campaign_id,
                "household_id": door.household_id,
                "grid_id": household["grid_id"],
                "list_id": campaign["list_of"][door.household_id],
                "outcome": door.outcome.value if newest else before["outcome"],
                "attempts": before.get("attempts", 0) + 1,
                "first_at": min(before.get("first_at", at), at),
                "last_at": at if newest else latest,
                "reached_at": reached_at,
                "reported_at": now,
                "by": (cmd.volunteer_id or cmd.actor) if newest else before.get("by"),
                "needs": [*before.get("needs", []), *(n.value for n in door.needs)],
                "order_ids": [*before.get("order_ids", []), *order_ids],
                "notes": [*before.get("notes", []), *([door.note] if door.note else [])],
                "records": {**records, record_id: {"at": at, "order_ids": order_ids}},
            },
        )
        events.append(
            c.DoorVisited(
                campaign_id=cmd.campaign_id,
                household_id=door.household_id,
                grid_id=household["grid_id"],
                outcome=door.outcome,
                needs=door.needs,
                order_ids=order_ids,
            )
        )
        events.extend(opened_here)
        recorded.append(
            {"household_id": door.household_id, "record_id": record_id, "order_ids": order_ids}
        )
    return Decision(events, Outcome.ok({"recorded": recorded}))


def _address(book: Orderbook, household_id: str) -> str:
    household = book.get(HOUSEHOLDS, household_id)
    return household["address_text"] if household else household_id


def join_open_rounds(book: Orderbook, households: list[dict[str, Any] | None]) -> None:
    """Households registered while a round runs are in it (不漏一户: coverage counts them
    and their doors are taken): on a list of their building with room, else a new one."""
    for campaign in list(book.values(CAMPAIGNS)):
        if campaign["status"] != "open":
            continue
        lists = dict(campaign["lists"])
        list_of = dict(campaign["list_of"])
        for household in households:
            if household is None or household["_id"] in list_of:
                continue
            if campaign["grid_ids"] and household["grid_id"] not in campaign["grid_ids"]:
                continue
            a = household["address"]
            here = (household["grid_id"], a["compound"], a["building"])
            same = [
                w for w in lists.values() if (w["grid_id"], w["compound"], w["building"]) == here
            ]
            walk = next((w for w in same if len(w["households"]) < LIST_SIZE), None)
            if walk is None:
                list_id = f"{campaign['_id']}-{len(lists) + 1:04d}"
                walk = {
                    "list_id": list_id,
                    "grid_id": here[0],
                    "compound": here[1],
                    "building": here[2],
                    "part": len(same) + 1,
                    "households": [],
                    "volunteer_id": None,
                }
            ordered = [*walk["households"], household["_id"]]
            ordered.sort(key=lambda h: walk_order(book.get(HOUSEHOLDS, h) or household))
            lists[walk["list_id"]] = {**walk, "households": ordered}
            list_of[household["_id"]] = walk["list_id"]
        if len(list_of) != len(campaign["list_of"]):
            book.put(CAMPAIGNS, {**campaign, "lists": lists, "list_of": list_of})


def hand_to_grid_worker(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, c.HandToGridWorker)
    campaign = _campaign(book, cmd.campaign_id)
    list_id = campaign["list_of"].get(cmd.household_id)
    if list_id is None:
        raise Rejection(404, "no such household in this round", "Not found")
    household = book.get(HOUSEHOLDS, cmd.household_id) or {}
    visit = book.get(VISITS, _visit_id(cmd.campaign_id, cmd.household_id)) or {
        # A door nobody has knocked at yet (staff know it is empty, the cadre cannot go):
        # it may go to the grid worker too.
        "_id": _visit_id(cmd.campaign_id, cmd.household_id),
        "campaign_id": cmd.campaign_id,
        "household_id": cmd.household_id,
        "grid_id": household.get("grid_id", ""),
        "list_id": list_id,
        "outcome": c.Outcome.no_answer.value,
        "attempts": 0,
        "last_at": now,
    }
    if is_reached(visit):
        raise Rejection(409, "the door was answered: nothing to hand over", "Not handed over")
    if visit.get("handed_to"):
        raise Rejection(409, f"handed to {visit['handed_to']} already", "Handed over already")
    community = book.get(COMMUNITIES, book.community_id) or {"grids": []}
    grid = next(g for g in community["grids"] if g["grid_id"] == visit["grid_id"])
    book.put(VISITS, {**visit, "handed_to": grid["grid_worker"], "handed_at": now})
    handed = c.HandedToGridWorker(
        campaign_id=cmd.campaign_id,
        household_id=cmd.household_id,
        grid_id=visit["grid_id"],
        grid_worker=grid["grid_worker"],
        grid_worker_phone=grid["grid_worker_phone"],
        address=household.get("address_text", ""),
    )
    return Decision([handed], Outcome.ok({"handed_to": grid["grid_worker"]}))


def close_campaign(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, c.CloseCampaign)
    campaign = _campaign(book, cmd.campaign_id)
    left = not_reached(campaign, visits_of(book, campaign))
    if left and not cmd.reason:
        raise Rejection(
            409,
            f"{left} households are not reached yet; give a reason to close anyway",
            "Households not reached",
        )
    campaign = book.put(
        CAMPAIGNS,
        {
            **campaign,
            "status": "closed",
            "closed_at": now,
            "closed_by": cmd.actor,
            "close_reason": cmd.reason,
            "not_reached_at_close": left,
        },
    )
    closed = c.CampaignClosed(campaign_id=cmd.campaign_id, reason=cmd.reason, not_reached=left)
    return Decision([closed], Outcome.ok(campaign_view(campaign)))


# --- who is on duty (volunteers' facts) ------------------------------------------------


def cadre_approved(book: Orderbook, event: Event, now: datetime) -> Decision:
    fact = event.data
    assert isinstance(fact, v.VolunteerApproved)
    before = book.get(CADRES, fact.volunteer_id) or {}
    book.put(
        CADRES,
        {**before, "_id": fact.volunteer_id, "name": fact.name, "capacity": fact.capacity},
    )
    return Decision()


def shift_started(book: Orderbook, event: Event, now: datetime) -> Decision:
    fact = event.data
    assert isinstance(fact, v.ShiftStarted)
    before = book.get(CADRES, fact.volunteer_id) or {"_id": fact.volunteer_id, "capacity": 1}
    book.put(CADRES, {**before, "on_duty": fact.grid_id, "shift_id": fact.shift_id})
    return Decision()


def shift_ended(book: Orderbook, event: Event, now: datetime) -> Decision:
    fact = event.data
    assert isinstance(fact, v.ShiftEnded)
    before = book.get(CADRES, fact.volunteer_id)
    if before is not None and before.get("shift_id") == fact.shift_id:
        book.put(CADRES, {**before, "on_duty": None})
        release_walk_lists(book, fact.volunteer_id)
    return Decision()


def release_walk_lists(book: Orderbook, volunteer_id: str) -> None:
    """A cadre gone off duty holds no walk list: another can take it. What they recorded
    offline still syncs (a former holder's records are taken, see ``_door_fault``)."""
    for campaign in list(book.values(CAMPAIGNS)):
        if campaign["status"] != "open":
            continue
        held = [i for i, w in campaign["lists"].items() if w["volunteer_id"] == volunteer_id]
        if held:
            lists = {
                i: {**w, "volunteer_id": None} if i in held else w
                for i, w in campaign["lists"].items()
            }
            book.put(CAMPAIGNS, {**campaign, "lists": lists})


def campaign_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k not in ("_id", "_n", "lists", "list_of")}
    view["campaign_id"] = doc["_id"]
    view["walk_lists"] = len(doc["lists"])
    view["households"] = len(doc["list_of"])
    return view


# --- what staff and cadres read ------------------------------------------------------------


def walk_list_view(
    walk: dict[str, Any],
    visits: dict[str, dict[str, Any]],
    households: dict[str, dict[str, Any]],
    revisit_after: timedelta,
    now: datetime,
) -> dict[str, Any]:
    doors = []
    for household_id in walk["households"]:
        household = households.get(household_id, {})
        visit = visits.get(household_id)
        state = door_state(visit, revisit_after, now)
        doors.append(
            {
                "household_id": household_id,
                "address": household.get("address_text"),
                # the code on the household's contact card: scanning it finds the door
                "card_code": household.get("card_code"),
                "flags": household.get("flags", []),
                "state": state.state,
                "revisit_due": state.due,
                "attempts": (visit or {}).get("attempts", 0),
            }
        )
    return {**{k: v for k, v in walk.items() if k != "households"}, "doors": doors}


def revisits(
    campaign: dict[str, Any], visits: dict[str, dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """No-answer doors due again, oldest first, with the walk list they are on."""
    revisit = timedelta(seconds=campaign["revisit_after_seconds"])
    due = [visit for visit in visits.values() if door_state(visit, revisit, now).due]
    return [
        {
            "household_id": v["household_id"],
            "grid_id": v["grid_id"],
            "list_id": v["list_id"],
            "attempts": v["attempts"],
            "last_at": v["last_at"],
        }
        for v in sorted(due, key=lambda v: (v["last_at"], v["household_id"]))
    ]


def exceptions(
    campaign: dict[str, Any],
    visits: dict[str, dict[str, Any]],
    households: Iterable[dict[str, Any]],
    orders: dict[str, dict[str, Any]],
    last_contact: dict[str, datetime],
    now: datetime,
    no_contact_days: int,
) -> dict[str, list[dict[str, Any]]]:
    """For the grid worker: doors never reached (no answer every time); needs found at a
    door whose orders are not delivered yet; elderly people living alone with no contact
    (a door answered, an order delivered) in ``no_contact_days``."""
    homes = {h["_id"]: h for h in households}
    # Not reached: doors that never answered; once the round is closed, also the doors
    # nobody knocked at (while it runs, those are its coverage's "not yet").
    closed = campaign["status"] != "open"
    never = [
        {
            "household_id": household_id,
            "grid_id": homes.get(household_id, {}).get("grid_id", ""),
            "address": homes.get(household_id, {}).get("address_text"),
            "attempts": (visits.get(household_id) or {}).get("attempts", 0),
            "handed_to": (visits.get(household_id) or {}).get("handed_to"),
        }
        for household_id in campaign["list_of"]
        if not is_reached(visits.get(household_id))
        and (closed or visits.get(household_id) is not None)
    ]
    unserved = [
        {
            "household_id": v["household_id"],
            "grid_id": v["grid_id"],
            "address": homes.get(v["household_id"], {}).get("address_text"),
            "order_id": order_id,
            "status": orders[order_id]["status"] if order_id in orders else "unknown",
        }
        for v in visits.values()
        for order_id in v.get("order_ids", [])
        if order_id not in orders or orders[order_id]["status"] not in ("delivered", "cancelled")
    ]
    since = now - timedelta(days=no_contact_days)
    in_campaign = campaign["list_of"]
    alone = [
        {
            "household_id": h["_id"],
            "grid_id": h["grid_id"],
            "address": h.get("address_text"),
            "last_contact": last_contact.get(h["_id"]),
        }
        for h in homes.values()
        if h["_id"] in in_campaign
        and "elderly_alone" in h.get("flags", [])
        and (last_contact.get(h["_id"]) is None or last_contact[h["_id"]] < since)
    ]
    key = lambda e: (e["grid_id"], e["household_id"])  # noqa: E731
    return {
        "never_reached": sorted(never, key=key),
        "needs_not_served": sorted(unserved, key=key),
        "elderly_alone_no_contact": sorted(alone, key=key),
    }


def last_contacts(
    visits: Iterable[dict[str, Any]], orders: Iterable[dict[str, Any]]
) -> dict[str, datetime]:
    """When each household was last in contact: a door answered, an order delivered."""
    latest: dict[str, datetime] = {}
    moments = [(v["household_id"], v.get("reached_at")) for v in visits]
    moments += [
        (o["household_id"], o.get("updated_at")) for o in orders if o["status"] == "delivered"
    ]
    for household_id, at in moments:
        if at is not None and (household_id not in latest or at > latest[household_id]):
            latest[household_id] = at
    return latest
