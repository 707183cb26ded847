"""HTTP API of the volunteers service (under /v1)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, Field, StrictInt, field_validator
from pymongo.asynchronous.database import AsyncDatabase

from services.volunteers.views import volunteer_view
from shared.api import Commands, Db, StrictBody, answer
from shared.auth import CurrentPrincipal, Principal, Role, VolunteerOrStaff, require
from shared.commands import new_command_id
from shared.contracts import volunteers as v
from shared.contracts.base import PHONE, normalise_phone
from shared.http import Problem

router = APIRouter(prefix="/v1", tags=["volunteers"])


class RegistrationIn(StrictBody):
    name: str = Field(min_length=1, max_length=100, examples=["Li Wei"])
    phone: str = Field(max_length=30, examples=["13700000001"])
    compound: str = Field(min_length=1, max_length=100, examples=["Datong Garden"])
    home_grid_id: str = Field(min_length=1, max_length=64, examples=["g3"])
    work_unit: str = Field(min_length=1, max_length=100, examples=["city ecology bureau"])
    skills: list[v.Skill] = Field(min_length=1, max_length=6, examples=[["delivery", "driving"]])
    capacity: StrictInt = Field(default=2, ge=1, le=10, description="Most tasks at once")

    @field_validator("phone")
    @classmethod
    def phone_shape(cls, value: str) -> str:
        phone = normalise_phone(value)
        if not PHONE.match(phone):
            raise ValueError("phone must be 7 to 15 digits, optionally starting with +")
        return phone


@router.post("/volunteers", status_code=201, summary="Register (报到) with your home community")
async def register(
    body: RegistrationIn, principal: VolunteerOrStaff, commands: Commands
) -> JSONResponse:
    volunteer_id = (
        principal.volunteer_id
        if principal.role is Role.volunteer
        else f"vol_{uuid.uuid4().hex[:12]}"
    )
    assert volunteer_id is not None and principal.community_id is not None
    command = v.RegisterVolunteer(
        command_id=new_command_id(),
        actor=principal.subject,
        volunteer_id=volunteer_id,
        **body.model_dump(),
    )
    return answer(await commands.send(principal.community_id, command))


async def visible(
    database: AsyncDatabase[dict[str, Any]], principal: Principal, volunteer_id: str
) -> dict[str, Any]:
    require(principal, Role.volunteer, Role.staff, Role.ops)
    # Stored per community ("{community}:{id}"); a bare id was stored before that.
    keys = [volunteer_id]
    if principal.community_id is not None:
        keys.insert(0, f"{principal.community_id}:{volunteer_id}")
    found = await database["volunteers"].find({"_id": {"$in": keys}}).to_list()
    doc = min(found, key=lambda d: keys.index(d["_id"]), default=None)
    if doc is None or not principal.may_see_community(doc["community_id"]):
        raise Problem(404, "Not found", "no such volunteer")
    if principal.role is Role.volunteer and principal.volunteer_id != volunteer_id:
        raise Problem(404, "Not found", "no such volunteer")
    return doc


@router.get(
    "/volunteers/{volunteer_id}", summary="A volunteer, with on-duty status and hours worked"
)
async def get_volunteer(
    volunteer_id: str, principal: CurrentPrincipal, database: Db
) -> dict[str, Any]:
    return volunteer_view(await visible(database, principal, volunteer_id), datetime.now(UTC))


@router.get("/volunteers", summary="Volunteers of your community (staff)")
async def list_volunteers(
    principal: CurrentPrincipal,
    database: Db,
    status: Annotated[str | None, Query(pattern=r"^(pending|approved)$")] = None,
    on_duty: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> dict[str, Any]:
    require(principal, Role.staff, Role.grid_worker, Role.ops)
    query: dict[str, Any] = {}
    if principal.role is not Role.ops:
        query["community_id"] = principal.community_id
    if status:
        query["status"] = status
    if on_duty is not None:
        query["shift"] = {"$ne": None} if on_duty else None
    now = datetime.now(UTC)
    docs = await database["volunteers"].find(query).limit(limit).to_list()
    return {"volunteers": [volunteer_view(d, now) for d in docs]}


@router.post("/volunteers/{volunteer_id}/approve", summary="Approve a registration (staff)")
async def approve(
    volunteer_id: str, principal: CurrentPrincipal, commands: Commands, database: Db
) -> JSONResponse:
    doc = await visible(database, principal, volunteer_id)
    require(principal, Role.staff)
    command = v.ApproveVolunteer(
        command_id=new_command_id(), actor=principal.subject, volunteer_id=volunteer_id
    )
    return answer(await commands.send(doc["community_id"], command))


class CheckInIn(StrictBody):
    grid_id: str = Field(min_length=1, max_length=64, examples=["g3"])
    until: AwareDatetime = Field(
        description="When the shift ends (ISO 8601 with offset)",
        examples=["2022-05-01T18:00:00+08:00"],
    )


MAX_SHIFT_HOURS = 24


def self_or_staff(principal: Principal, volunteer_id: str) -> None:
    require(principal, Role.volunteer, Role.staff)
    if principal.role is Role.volunteer and principal.volunteer_id != volunteer_id:
        raise Problem(403, "Forbidden", "volunteers check themselves in and out")


@router.post("/volunteers/{volunteer_id}/check-in", summary="Start a shift in a grid")
async def check_in(
    volunteer_id: str,
    body: CheckInIn,
    principal: VolunteerOrStaff,
    commands: Commands,
    database: Db,
) -> JSONResponse:
    self_or_staff(principal, volunteer_id)
    doc = await visible(database, principal, volunteer_id)
    hours = (body.until - datetime.now(UTC)).total_seconds() / 3600
    if not 0 < hours <= MAX_SHIFT_HOURS:
        raise Problem(
            422,
            "Invalid request",
            "until must be in the future and at most 24 hours away",
            kind="validation",
            errors=[{"field": "until", "message": "out of range", "type": "value_error"}],
        )
    command = v.CheckIn(
        command_id=new_command_id(),
        actor=principal.subject,
        volunteer_id=volunteer_id,
        grid_id=body.grid_id,
        until=body.until.astimezone(UTC),
    )
    return answer(await commands.send(doc["community_id"], command))


@router.post("/volunteers/{volunteer_id}/check-out", summary="End the current shift")
async def check_out(
    volunteer_id: str, principal: CurrentPrincipal, commands: Commands, database: Db
) -> JSONResponse:
    self_or_staff(principal, volunteer_id)
    doc = await visible(database, principal, volunteer_id)
    command = v.CheckOut(
        command_id=new_command_id(), actor=principal.subject, volunteer_id=volunteer_id
    )
    return answer(await commands.send(doc["community_id"], command))


class RemovalIn(StrictBody):
    reason: str = Field(default="", max_length=300, examples=["moved to another community"])


@router.post(
    "/volunteers/{volunteer_id}/remove",
    summary="Remove a cadre (staff): their shift ends, no more offers, their sign-in ends",
)
async def remove(
    volunteer_id: str,
    principal: CurrentPrincipal,
    commands: Commands,
    database: Db,
    body: RemovalIn | None = None,
) -> JSONResponse:
    doc = await visible(database, principal, volunteer_id)
    require(principal, Role.staff)
    command = v.RemoveVolunteer(
        command_id=new_command_id(),
        actor=principal.subject,
        volunteer_id=volunteer_id,
        reason=body.reason if body else "",
    )
    return answer(await commands.send(doc["community_id"], command))
