"""Published by the volunteers service on ``volunteers.events``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from shared.contracts.base import Payload


class Skill(StrEnum):
    delivery = "delivery"
    medical = "medical"
    driving = "driving"
    app_help = "app_help"
    phone_duty = "phone_duty"
    disinfection = "disinfection"


class VolunteerApproved(Payload):
    """A registered cadre may now be offered tasks (approved by staff or automatically)."""

    type: Literal["doorstep.volunteer.approved.v1"] = "doorstep.volunteer.approved.v1"
    volunteer_id: str
    name: str
    phone: str
    home_grid_id: str
    skills: list[Skill] = Field(default_factory=list)
    capacity: int = Field(ge=1)
    work_unit: str | None = None  # the bureau that sent them (mobilisation is counted by it)


class ShiftStarted(Payload):
    type: Literal["doorstep.shift.started.v1"] = "doorstep.shift.started.v1"
    volunteer_id: str
    shift_id: str
    grid_id: str
    until: datetime


class ShiftEnded(Payload):
    type: Literal["doorstep.shift.ended.v1"] = "doorstep.shift.ended.v1"
    volunteer_id: str
    shift_id: str
    reason: Literal["checked_out", "expired", "removed"]


class VolunteerRemoved(Payload):
    """Staff removed a cadre: no more offers, and their sign-in ends at the next refresh
    (their shift, if any, ended just before, as its own event)."""

    type: Literal["doorstep.volunteer.removed.v1"] = "doorstep.volunteer.removed.v1"
    volunteer_id: str
    phone: str
    reason: str = ""


# --- commands (volunteers.commands) ------------------------------------------------------


class VolunteersCommand(Payload):
    command_id: str
    actor: str
    volunteer_id: str


class RegisterVolunteer(VolunteersCommand):
    type: Literal["doorstep.volunteer.register.v1"] = "doorstep.volunteer.register.v1"
    name: str
    phone: str
    compound: str
    home_grid_id: str
    work_unit: str
    skills: list[Skill]
    capacity: int


class ApproveVolunteer(VolunteersCommand):
    type: Literal["doorstep.volunteer.approve.v1"] = "doorstep.volunteer.approve.v1"


class CheckIn(VolunteersCommand):
    type: Literal["doorstep.shift.check_in.v1"] = "doorstep.shift.check_in.v1"
    grid_id: str
    until: datetime


class CheckOut(VolunteersCommand):
    type: Literal["doorstep.shift.check_out.v1"] = "doorstep.shift.check_out.v1"
    reason: Literal["checked_out", "expired"] = "checked_out"
    shift_id: str | None = None  # for expiry: only that shift


class RemoveVolunteer(VolunteersCommand):
    type: Literal["doorstep.volunteer.remove.v1"] = "doorstep.volunteer.remove.v1"
    reason: str = ""


COMMANDS = (RegisterVolunteer, ApproveVolunteer, CheckIn, CheckOut, RemoveVolunteer)
EVENTS = (VolunteerApproved, ShiftStarted, ShiftEnded, VolunteerRemoved)
PAYLOADS = COMMANDS + EVENTS
