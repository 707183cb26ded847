"""Door-knock campaigns (不漏一户): commands on ``orders.commands``, events on
``orders.events``. Orders owns them: a campaign is a walk over the households it owns, and
a need found at a door becomes an order in the same decision."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from shared.contracts.base import Payload
from shared.contracts.orders import OrdersCommand


class Outcome(StrEnum):
    answered = "answered"
    no_answer = "no_answer"
    refused = "refused"


class Need(StrEnum):
    medicine = "medicine"
    food = "food"
    medical_attention = "medical_attention"
    other = "other"


class Door(BaseModel):
    """One door as a volunteer recorded it."""

    household_id: str
    outcome: Outcome
    needs: list[Need] = Field(default_factory=list)
    note: str | None = None
    visited_at: datetime | None = None  # when the phone recorded it (may sync later)
    # Made on the phone when the door was recorded: the same record sent again (a retry,
    # a late sync) is one record and opens its needs' orders once. None: the server's.
    record_id: str | None = None
    items: dict[Need, str] = Field(default_factory=dict)  # what each need is, if said


# --- commands -------------------------------------------------------------------------


class StartCampaign(OrdersCommand):
    type: Literal["doorstep.campaign.start.v1"] = "doorstep.campaign.start.v1"
    campaign_id: str
    title: str
    grid_ids: list[str]  # empty: the whole community
    revisit_after_seconds: int


class TakeWalkList(OrdersCommand):
    """A grid worker gives a walk list to a cadre on duty, or the cadre claims it."""

    type: Literal["doorstep.campaign.take_walk_list.v1"] = "doorstep.campaign.take_walk_list.v1"
    campaign_id: str
    list_id: str
    volunteer_id: str
    role: str


class RecordVisits(OrdersCommand):
    type: Literal["doorstep.campaign.record_visits.v1"] = "doorstep.campaign.record_visits.v1"
    campaign_id: str
    volunteer_id: str | None  # None: staff recorded it (a grid worker at the door)
    doors: list[Door]


class HandToGridWorker(OrdersCommand):
    """A door that never answers goes to the grid worker by name."""

    type: Literal["doorstep.campaign.hand_over.v1"] = "doorstep.campaign.hand_over.v1"
    campaign_id: str
    household_id: str


class CloseCampaign(OrdersCommand):
    type: Literal["doorstep.campaign.close.v1"] = "doorstep.campaign.close.v1"
    campaign_id: str
    reason: str | None = None  # required while any household is not reached


# --- events ---------------------------------------------------------------------------


class CampaignStarted(Payload):
    type: Literal["doorstep.campaign.started.v1"] = "doorstep.campaign.started.v1"
    campaign_id: str
    title: str
    grid_ids: list[str]
    household_count: int
    walk_list_count: int


class WalkListTaken(Payload):
    type: Literal["doorstep.campaign.walk_list_taken.v1"] = "doorstep.campaign.walk_list_taken.v1"
    campaign_id: str
    list_id: str
    volunteer_id: str
    grid_id: str
    from_volunteer_id: str | None = None  # who held it before (staff gave it to another)
    building: str = ""  # which doors, in words


class DoorVisited(Payload):
    type: Literal["doorstep.campaign.door_visited.v1"] = "doorstep.campaign.door_visited.v1"
    campaign_id: str
    household_id: str
    grid_id: str
    outcome: Outcome
    needs: list[Need]
    order_ids: list[str]


class HandedToGridWorker(Payload):
    type: Literal["doorstep.campaign.handed_over.v1"] = "doorstep.campaign.handed_over.v1"
    campaign_id: str
    household_id: str
    grid_id: str
    grid_worker: str
    grid_worker_phone: str
    address: str


class CampaignClosed(Payload):
    type: Literal["doorstep.campaign.closed.v1"] = "doorstep.campaign.closed.v1"
    campaign_id: str
    reason: str | None
    not_reached: int


COMMANDS = (StartCampaign, TakeWalkList, RecordVisits, HandToGridWorker, CloseCampaign)
EVENTS = (CampaignStarted, WalkListTaken, DoorVisited, HandedToGridWorker, CampaignClosed)
PAYLOADS = COMMANDS + EVENTS
