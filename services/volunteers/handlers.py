"""The volunteers owner: applies commands for the communities whose partition this
instance owns (their only writer), and keeps each community's policy from orders' events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi.encoders import jsonable_encoder
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.volunteers import domain
from shared import mongo, outbox
from shared.commands import Outcome, once_per_command
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.contracts.base import Payload
from shared.events import Event
from shared.kafka import EventPublisher
from shared.topics import VOLUNTEERS_EVENTS

SOURCE = "/volunteers"


def volunteer_view(doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    view = {k: val for k, val in doc.items() if k not in {"outbox"}}
    view["volunteer_id"] = view.pop("_id")
    shift = doc.get("shift")
    view["on_duty"] = shift is not None
    view["hours_worked"] = domain.hours_worked(doc.get("worked_seconds", 0.0), shift, now)
    return jsonable_encoder(view)  # type: ignore[no-any-return]


class VolunteersOwner:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher) -> None:
        self.db = db
        self.publisher = publisher
        self.volunteers = db["volunteers"]
        self.communities = db["communities"]

    @property
    def table(self) -> dict[type[Any], Callable[[Event], Awaitable[None]]]:
        return {
            v.RegisterVolunteer: self.command(self.register),
            v.ApproveVolunteer: self.command(self.approve),
            v.CheckIn: self.command(self.check_in),
            v.CheckOut: self.command(self.check_out),
            o.CommunityDefined: self.community_defined,
        }

    async def ensure_indexes(self) -> None:
        await self.volunteers.create_index([("community_id", 1), ("status", 1)])
        await self.volunteers.create_index([("shift.until", 1)])

    def command(
        self, apply: Callable[[Event, Any], Awaitable[Outcome]]
    ) -> Callable[[Event], Awaitable[None]]:
        return once_per_command(self.db, apply)

    def event(self, cause: Event, payload: Payload, volunteer_id: str) -> Event:
        return cause.follow_up(SOURCE, payload, subject=f"volunteer/{volunteer_id}")

    async def _write(self, doc_id: str, update: dict[str, Any], *events: Event) -> None:
        if events:
            update.setdefault("$push", {})["outbox"] = {"$each": outbox.entries(*events)}
        await self.volunteers.update_one({"_id": doc_id}, update)
        await outbox.flush(self.volunteers, doc_id, self.publisher, VOLUNTEERS_EVENTS)

    async def community_defined(self, event: Event) -> None:
        payload = event.data
        assert isinstance(payload, o.CommunityDefined)
        await self.communities.replace_one(
            {"_id": payload.community_id},
            {"grids": [g.grid_id for g in payload.grids], "policy": payload.policy.model_dump()},
            upsert=True,
        )

    def approved_event(self, cause: Event, doc: dict[str, Any]) -> Event:
        approved = v.VolunteerApproved(
            volunteer_id=doc["_id"],
            name=doc["name"],
            phone=doc["phone"],
            home_grid_id=doc["home_grid_id"],
            skills=doc["skills"],
            capacity=doc["capacity"],
        )
        return self.event(cause, approved, doc["_id"])

    async def register(self, event: Event, cmd: v.RegisterVolunteer) -> Outcome:
        community = await self.communities.find_one({"_id": event.community_id})
        if community is None:
            return Outcome.rejected(404, "Not found", f"no community {event.community_id!r}")
        if cmd.home_grid_id not in community["grids"]:
            return Outcome.rejected(422, "Invalid request", f"unknown grid {cmd.home_grid_id!r}")
        auto = bool(community["policy"].get("auto_approve_volunteers"))
        doc: dict[str, Any] = {
            "_id": cmd.volunteer_id,
            "community_id": event.community_id,
            "name": cmd.name,
            "phone": cmd.phone,
            "compound": cmd.compound,
            "home_grid_id": cmd.home_grid_id,
            "work_unit": cmd.work_unit,
            "skills": [s.value for s in cmd.skills],
            "capacity": cmd.capacity,
            "status": "approved" if auto else "pending",
            "registered_at": event.time,
            "approved_at": event.time if auto else None,
            "shift": None,
            "worked_seconds": 0.0,
            "shifts": 0,
        }
        doc["outbox"] = outbox.entries(self.approved_event(event, doc)) if auto else []
        try:
            await self.volunteers.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.volunteers.find_one({"_id": cmd.volunteer_id})
            if existing and existing.get("registered_at") != event.time:
                return Outcome.rejected(409, "Already registered", "this volunteer is registered")
        await outbox.flush(self.volunteers, cmd.volunteer_id, self.publisher, VOLUNTEERS_EVENTS)
        return Outcome.ok(volunteer_view(doc, event.time), 201)

    async def _volunteer(self, event: Event, volunteer_id: str) -> dict[str, Any] | None:
        return await mongo.find_in_community(self.volunteers, volunteer_id, event.community_id)

    async def approve(self, event: Event, cmd: v.ApproveVolunteer) -> Outcome:
        doc = await self._volunteer(event, cmd.volunteer_id)
        if doc is None:
            return Outcome.rejected(404, "Not found", "no such volunteer")
        if doc["status"] == "approved":
            return Outcome.ok(volunteer_view(doc, event.time))
        changes = {"status": "approved", "approved_at": event.time}
        await self._write(doc["_id"], {"$set": changes}, self.approved_event(event, doc))
        return Outcome.ok(volunteer_view({**doc, **changes}, event.time))

    async def check_in(self, event: Event, cmd: v.CheckIn) -> Outcome:
        doc = await self._volunteer(event, cmd.volunteer_id)
        if doc is None:
            return Outcome.rejected(404, "Not found", "no such volunteer")
        community = await self.communities.find_one({"_id": event.community_id}) or {"grids": []}
        if cmd.grid_id not in community["grids"]:
            return Outcome.rejected(422, "Invalid request", f"unknown grid {cmd.grid_id!r}")
        refusal = domain.check_in_refusal(
            doc["status"], doc.get("shift") is not None, cmd.until, event.time
        )
        if refusal:
            return Outcome.rejected(409, "Cannot check in", refusal)
        shift = {
            "shift_id": cmd.command_id[:16],
            "grid_id": cmd.grid_id,
            "started_at": event.time,
            "until": cmd.until,
        }
        started = v.ShiftStarted(
            volunteer_id=doc["_id"],
            shift_id=cmd.command_id[:16],
            grid_id=cmd.grid_id,
            until=cmd.until,
        )
        await self._write(
            doc["_id"], {"$set": {"shift": shift}}, self.event(event, started, doc["_id"])
        )
        return Outcome.ok(volunteer_view({**doc, "shift": shift}, event.time))

    async def check_out(self, event: Event, cmd: v.CheckOut) -> Outcome:
        doc = await self._volunteer(event, cmd.volunteer_id)
        if doc is None:
            return Outcome.rejected(404, "Not found", "no such volunteer")
        shift = doc.get("shift")
        if shift is None or (cmd.shift_id and shift["shift_id"] != cmd.shift_id):
            return Outcome.rejected(409, "Not on duty", "no shift to end")
        ended = v.ShiftEnded(volunteer_id=doc["_id"], shift_id=shift["shift_id"], reason=cmd.reason)
        worked = doc.get("worked_seconds", 0.0) + domain.worked_seconds(
            shift["started_at"], event.time, shift["until"]
        )
        changes = {"shift": None, "worked_seconds": worked, "shifts": doc.get("shifts", 0) + 1}
        await self._write(doc["_id"], {"$set": changes}, self.event(event, ended, doc["_id"]))
        return Outcome.ok(volunteer_view({**doc, **changes}, event.time))
