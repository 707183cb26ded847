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
    reason: Literal["checked_out", "expired"]


PAYLOADS = (VolunteerApproved, ShiftStarted, ShiftEnded)
