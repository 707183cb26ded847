"""The sub-district's rules, pure: what each community's events say about how it is doing,
kept per community by the shared owner (``shared.owner.CommunityLog``), one log entry per
batch like every other owner. Nothing here is decided for anyone: this service is a view
built from orders', dispatch's and volunteers' events, and it publishes none.

Two read models:
- ``communities``: one document per community — its name and sub-district, households,
  the orders still open (with whether each is urgent, taken by a cadre, escalated, late),
  orders placed and delivered per local day, the cadres on duty, the door-knock rounds
  running and the households each has reached;
- ``cadres``: one per cadre and community — work unit, the shift running, seconds served
  and tasks delivered per local day (mobilisation is counted from them)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

from shared.contracts import campaigns as c
from shared.contracts import dispatch as d
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.contracts.orders import Category, clock_of
from shared.days import add_days, seconds_by_day
from shared.decision import Change, Decide, Decision, Documents
from shared.events import Event

COMMUNITIES, CADRES = "communities", "cadres"
CLOSED = frozenset({"delivered", "cancelled"})
# Orders closed lately, remembered so that a late event of one (another topic's, read in
# the same batch or after) neither opens nor counts it again: events of one order come on
# three topics, and nothing orders them across topics.
CLOSED_KEPT = 2_000


def _community(state: Documents) -> dict[str, Any]:
    """The community's document; one heard of before its definition still counts."""
    return state.get(COMMUNITIES, state.community_id) or {
        "_id": state.community_id,
        "name": state.community_id,
        "sub_district": None,
        "clock": {},
        "urgent_priority": o.CommunityPolicy().urgent_priority,
        "households": 0,
        "open": {},
        "closed": [],
        "placed_by_day": {},
        "delivered_by_day": {},
        "on_duty": {},
        "rounds": {},
    }


def clock(community: dict[str, Any]) -> tzinfo:
    """The community's own clock (its days count orders and hours), Beijing's until known."""
    kept = community.get("clock") or {}
    return clock_of(kept.get("time_zone"), kept.get("utc_offset_minutes", 480))


def day_of(community: dict[str, Any], at: datetime) -> str:
    """The community's own day (ISO) that ``at`` falls on."""
    return at.astimezone(clock(community)).date().isoformat()


def _count(by_day: dict[str, int], day: str) -> dict[str, int]:
    return {**by_day, day: by_day.get(day, 0) + 1}


def community_defined(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, o.CommunityDefined)
    clock = {"time_zone": p.policy.time_zone, "utc_offset_minutes": p.policy.utc_offset_minutes}
    state.put(
        COMMUNITIES,
        {
            **_community(state),
            "name": p.name,
            "sub_district": p.sub_district,
            "clock": clock,
            "urgent_priority": p.policy.urgent_priority,
        },
    )
    return Decision()


def household_registered(state: Documents, event: Event, now: datetime) -> Decision:
    community = _community(state)
    state.put(COMMUNITIES, {**community, "households": community["households"] + 1})
    return Decision()


def _unknown() -> dict[str, Any]:
    """An open order heard of before its placing (another topic's event came first)."""
    return {"placed_at": None, "urgent": False, "taken": False, "escalated": False, "late": False}


def order_received(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, o.OrderReceived)
    community, order = _community(state), p.order
    changed = {
        **community,
        "placed_by_day": _count(community["placed_by_day"], day_of(community, event.time)),
    }
    if order.order_id not in community.get("closed", []):  # delivered or cancelled: not open
        urgent = (
            order.category == Category.transfer or order.priority >= community["urgent_priority"]
        )
        opened = community["open"].get(order.order_id) or _unknown()
        opened = {**opened, "placed_at": order.placed_at, "urgent": urgent}
        changed["open"] = {**community["open"], order.order_id: opened}
    state.put(COMMUNITIES, changed)
    return Decision()


def order_reopened(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, o.OrderReopened)
    community = _community(state)
    closed = [k for k in community.get("closed", []) if k != p.order.order_id]
    opened = {**(community["open"].get(p.order.order_id) or _unknown()), "taken": False}
    opened["placed_at"] = p.order.placed_at
    state.put(
        COMMUNITIES,
        {**community, "closed": closed, "open": {**community["open"], p.order.order_id: opened}},
    )
    return Decision()


def _close(state: Documents, order_id: str, at: datetime, *, delivered: bool) -> None:
    community = _community(state)
    if order_id in community.get("closed", []):
        return  # closed already (delivered is heard from dispatch and from orders)
    changed = {
        **community,
        "open": {k: x for k, x in community["open"].items() if k != order_id},
        "closed": [*community.get("closed", []), order_id][-CLOSED_KEPT:],
    }
    if delivered:
        changed["delivered_by_day"] = _count(community["delivered_by_day"], day_of(community, at))
    state.put(COMMUNITIES, changed)


def _mark(state: Documents, order_id: str, **marks: bool) -> None:
    community = _community(state)
    if order_id in community.get("closed", []):
        return
    marked = {**(community["open"].get(order_id) or _unknown()), **marks}
    state.put(COMMUNITIES, {**community, "open": {**community["open"], order_id: marked}})


def status_changed(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, o.OrderStatusChanged)
    if p.status in CLOSED:
        _close(state, p.order_id, event.time, delivered=p.status == "delivered")
    return Decision()


def order_cancelled(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, o.OrderCancelled)
    _close(state, p.order_id, event.time, delivered=False)
    return Decision()


def task_assigned(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, d.TaskAssigned)
    _mark(state, p.order.order_id, taken=True)
    return Decision()


def task_failed(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, d.TaskFailed | d.TaskReleased)
    _mark(state, p.order.order_id, taken=False)
    return Decision()


def order_escalated(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, d.OrderEscalated)
    _mark(state, p.order.order_id, escalated=True, late=p.reason.startswith("not taken"))
    return Decision()


def task_delivered(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, d.TaskDelivered)
    _close(state, p.order.order_id, event.time, delivered=True)
    community = _community(state)
    cadre = _cadre(state, p.volunteer_id)
    day = day_of(community, event.time)
    state.put(CADRES, {**cadre, "tasks_by_day": _count(cadre["tasks_by_day"], day)})
    return Decision()


def _cadre(state: Documents, volunteer_id: str) -> dict[str, Any]:
    return state.get(CADRES, volunteer_id) or {
        "_id": volunteer_id,
        "volunteer_id": volunteer_id,
        "name": volunteer_id,
        "work_unit": None,
        "shift": None,
        "seconds_by_day": {},
        "tasks_by_day": {},
    }


def volunteer_approved(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, v.VolunteerApproved)
    cadre = _cadre(state, p.volunteer_id)
    state.put(CADRES, {**cadre, "name": p.name, "work_unit": p.work_unit, "removed": False})
    return Decision()


def volunteer_removed(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, v.VolunteerRemoved)
    state.put(CADRES, {**_cadre(state, p.volunteer_id), "removed": True})
    return Decision()


def shift_started(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, v.ShiftStarted)
    shift = {"shift_id": p.shift_id, "started_at": event.time, "until": p.until}
    state.put(CADRES, {**_cadre(state, p.volunteer_id), "shift": shift})
    community = _community(state)
    on_duty = {**community["on_duty"], p.volunteer_id: p.grid_id}
    state.put(COMMUNITIES, {**community, "on_duty": on_duty})
    return Decision()


def shift_ended(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, v.ShiftEnded)
    cadre = _cadre(state, p.volunteer_id)
    shift = cadre.get("shift")
    if shift is not None and shift["shift_id"] == p.shift_id:
        community = _community(state)
        # An expired shift is checked out late by a timer: it counts until its planned end.
        ended = min(event.time, shift["until"])
        served = seconds_by_day(shift["started_at"], ended, clock(community))
        cadre = {
            **cadre,
            "shift": None,
            "seconds_by_day": add_days(cadre["seconds_by_day"], served),
        }
        state.put(CADRES, cadre)
        on_duty = {k: g for k, g in community["on_duty"].items() if k != p.volunteer_id}
        state.put(COMMUNITIES, {**community, "on_duty": on_duty})
    return Decision()


def campaign_started(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, c.CampaignStarted)
    community = _community(state)
    round_ = {"title": p.title, "households": p.household_count, "reached": []}
    state.put(COMMUNITIES, {**community, "rounds": {**community["rounds"], p.campaign_id: round_}})
    return Decision()


def door_visited(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, c.DoorVisited)
    community = _community(state)
    round_ = community["rounds"].get(p.campaign_id)
    if round_ is None or p.outcome != c.Outcome.answered or p.household_id in round_["reached"]:
        return Decision()
    round_ = {**round_, "reached": [*round_["reached"], p.household_id]}
    state.put(COMMUNITIES, {**community, "rounds": {**community["rounds"], p.campaign_id: round_}})
    return Decision()


def campaign_closed(state: Documents, event: Event, now: datetime) -> Decision:
    p = event.data
    assert isinstance(p, c.CampaignClosed)
    community = _community(state)
    rounds = {k: r for k, r in community["rounds"].items() if k != p.campaign_id}
    state.put(COMMUNITIES, {**community, "rounds": rounds})
    return Decision()


class DistrictRules:
    service: str = "district"
    events_topic: str = ""  # a view: it decides no events
    collections: tuple[str, ...] = (COMMUNITIES, CADRES)

    def table(self) -> Mapping[type[Any], Decide[Documents]]:
        return {
            o.CommunityDefined: community_defined,
            o.HouseholdRegistered: household_registered,
            o.OrderReceived: order_received,
            o.OrderReopened: order_reopened,
            o.OrderStatusChanged: status_changed,
            o.OrderCancelled: order_cancelled,
            d.TaskAssigned: task_assigned,
            d.TaskFailed: task_failed,
            d.TaskReleased: task_failed,
            d.OrderEscalated: order_escalated,
            d.TaskDelivered: task_delivered,
            v.VolunteerApproved: volunteer_approved,
            v.VolunteerRemoved: volunteer_removed,
            v.ShiftStarted: shift_started,
            v.ShiftEnded: shift_ended,
            c.CampaignStarted: campaign_started,
            c.DoorVisited: door_visited,
            c.CampaignClosed: campaign_closed,
        }

    def restore(self, community_id: str, docs: dict[str, list[dict[str, Any]]]) -> Documents:
        # A cadre's id may be registered in two communities: stored per community.
        return Documents(community_id, docs, scoped={CADRES: "volunteer_id"})

    def changes(self, state: Documents) -> list[Change]:
        return state.take_changes()
