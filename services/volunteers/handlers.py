"""The volunteers' rules, pure: one explicit table from input type to decision. The shared
owner (``shared.owner.CommunityLog``) feeds them a community's inputs and stores what
they decide as one log entry; the documents they put are the read models HTTP reads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.volunteers import domain
from services.volunteers.views import volunteer_view
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.contracts.base import Payload
from shared.decision import Change, Decide, Decision, Documents, Rejection
from shared.events import Event
from shared.outcome import Outcome
from shared.topics import VOLUNTEERS_EVENTS

COMMUNITIES, VOLUNTEERS = "communities", "volunteers"


def community_defined(state: Documents, event: Event, now: datetime) -> Decision:
    payload = event.data
    assert isinstance(payload, o.CommunityDefined)
    state.put(
        COMMUNITIES,
        {
            "_id": payload.community_id,
            "grids": [g.grid_id for g in payload.grids],
            "policy": payload.policy.model_dump(),
        },
    )
    return Decision()


def _community(state: Documents) -> dict[str, Any]:
    community = state.get(COMMUNITIES, state.community_id)
    if community is None:
        raise Rejection(404, f"no community {state.community_id!r}", "Not found")
    return community


def _volunteer(state: Documents, volunteer_id: str) -> dict[str, Any]:
    doc = state.get(VOLUNTEERS, volunteer_id)
    if doc is None:
        raise Rejection(404, "no such volunteer", "Not found")
    return doc


def approved(doc: dict[str, Any]) -> v.VolunteerApproved:
    return v.VolunteerApproved(
        volunteer_id=doc["_id"],
        name=doc["name"],
        phone=doc["phone"],
        home_grid_id=doc["home_grid_id"],
        skills=doc["skills"],
        capacity=doc["capacity"],
        work_unit=doc.get("work_unit"),
    )


def register(state: Documents, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, v.RegisterVolunteer)
    community = _community(state)
    if cmd.home_grid_id not in community["grids"]:
        raise Rejection(422, f"unknown grid {cmd.home_grid_id!r}", "Invalid request")
    if state.get(VOLUNTEERS, cmd.volunteer_id) is not None:
        raise Rejection(409, "this volunteer is registered", "Already registered")
    auto = bool(community["policy"].get("auto_approve_volunteers"))
    doc = state.put(
        VOLUNTEERS,
        {
            "_id": cmd.volunteer_id,
            "name": cmd.name,
            "phone": cmd.phone,
            "compound": cmd.compound,
            "home_grid_id": cmd.home_grid_id,
            "work_unit": cmd.work_unit,
            "skills": [s.value for s in cmd.skills],
            "capacity": cmd.capacity,
            "status": "approved" if auto else "pending",
            "registered_at": now,
            "approved_at": now if auto else None,
            "shift": None,
            "worked_seconds": 0.0,
            "shifts": 0,
        },
    )
    return Decision([approved(doc)] if auto else [], Outcome.ok(volunteer_view(doc, now), 201))


def approve(state: Documents, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, v.ApproveVolunteer)
    doc = _volunteer(state, cmd.volunteer_id)
    if doc["status"] == "removed":
        raise Rejection(409, "this cadre was removed", "Removed")
    if doc["status"] == "approved":
        return Decision(outcome=Outcome.ok(volunteer_view(doc, now)))
    doc = state.put(VOLUNTEERS, {**doc, "status": "approved", "approved_at": now})
    return Decision([approved(doc)], Outcome.ok(volunteer_view(doc, now)))


def check_in(state: Documents, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, v.CheckIn)
    doc = _volunteer(state, cmd.volunteer_id)
    if cmd.grid_id not in _community(state)["grids"]:
        raise Rejection(422, f"unknown grid {cmd.grid_id!r}", "Invalid request")
    refusal = domain.check_in_refusal(doc["status"], doc.get("shift") is not None, cmd.until, now)
    if refusal:
        raise Rejection(409, refusal, "Cannot check in")
    shift_id = cmd.command_id[:16]
    policy = o.CommunityPolicy.model_validate(_community(state).get("policy") or {})
    shift = {
        "shift_id": shift_id,
        "grid_id": cmd.grid_id,
        "started_at": now,
        "until": cmd.until,
        "utc_offset_minutes": policy.utc_offset_minutes,  # attendance counts its own days
        "time_zone": policy.time_zone,
    }
    doc = state.put(VOLUNTEERS, {**doc, "shift": shift})
    started = v.ShiftStarted(
        volunteer_id=doc["_id"], shift_id=shift_id, grid_id=cmd.grid_id, until=cmd.until
    )
    return Decision([started], Outcome.ok(volunteer_view(doc, now)))


def check_out(state: Documents, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, v.CheckOut)
    doc = _volunteer(state, cmd.volunteer_id)
    shift = doc.get("shift")
    if shift is None or (cmd.shift_id and shift["shift_id"] != cmd.shift_id):
        raise Rejection(409, "no shift to end", "Not on duty")
    doc, ended = _end_shift(state, doc, cmd.reason, now)
    return Decision([ended], Outcome.ok(volunteer_view(doc, now)))


def remove(state: Documents, event: Event, now: datetime) -> Decision:
    """Staff remove a cadre: a shift still open ends first (dispatch withdraws their
    offers as at any check-out), then they are removed (identity ends their sign-in)."""
    cmd = event.data
    assert isinstance(cmd, v.RemoveVolunteer)
    doc = _volunteer(state, cmd.volunteer_id)
    if doc["status"] == "removed":
        return Decision(outcome=Outcome.ok(volunteer_view(doc, now)))
    events: list[Payload] = []
    if doc.get("shift") is not None:
        doc, ended = _end_shift(state, doc, "removed", now)
        events.append(ended)
    doc = state.put(VOLUNTEERS, {**doc, "status": "removed", "removed_at": now})
    events.append(
        v.VolunteerRemoved(volunteer_id=doc["_id"], phone=doc["phone"], reason=cmd.reason)
    )
    return Decision(events, Outcome.ok(volunteer_view(doc, now)))


def _end_shift(
    state: Documents, doc: dict[str, Any], reason: Any, now: datetime
) -> tuple[dict[str, Any], v.ShiftEnded]:
    shift = doc["shift"]
    worked = doc.get("worked_seconds", 0.0) + domain.worked_seconds(
        shift["started_at"], now, shift["until"]
    )
    by_day = domain.add_days(
        doc.get("worked_by_day", {}),
        domain.worked_by_day(shift["started_at"], now, shift["until"], domain.shift_clock(shift)),
    )
    doc = state.put(
        VOLUNTEERS,
        {
            **doc,
            "shift": None,
            "worked_seconds": worked,
            "worked_by_day": by_day,
            "shifts": doc.get("shifts", 0) + 1,
        },
    )
    ended = v.ShiftEnded(volunteer_id=doc["_id"], shift_id=shift["shift_id"], reason=reason)
    return doc, ended


class VolunteersRules:
    service: str = "volunteers"
    events_topic: str = VOLUNTEERS_EVENTS
    collections: tuple[str, ...] = (COMMUNITIES, VOLUNTEERS)

    def table(self) -> Mapping[type[Any], Decide[Documents]]:
        return {
            v.RegisterVolunteer: register,
            v.ApproveVolunteer: approve,
            v.CheckIn: check_in,
            v.CheckOut: check_out,
            v.RemoveVolunteer: remove,
            o.CommunityDefined: community_defined,
        }

    def restore(self, community_id: str, docs: dict[str, list[dict[str, Any]]]) -> Documents:
        # A cadre's id may be registered in two communities: stored per community.
        return Documents(community_id, docs, scoped={VOLUNTEERS: "volunteer_id"})

    def changes(self, state: Documents) -> list[Change]:
        return state.take_changes()


def shifts_ended(state: Documents, now: datetime) -> list[Payload]:
    """The check-outs the clock calls for: shifts past their end (one id per shift)."""
    return [
        v.CheckOut(
            command_id=f"expire-{doc['shift']['shift_id']}",
            actor="system",
            volunteer_id=doc["_id"],
            reason="expired",
            shift_id=doc["shift"]["shift_id"],
        )
        for doc in domain.expired_shifts(state.values(VOLUNTEERS), now)
    ]
