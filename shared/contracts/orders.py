"""Published by the orders service on ``orders.events``."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, StrictBool, StrictInt, field_validator

from shared.contracts.base import Payload


class Category(StrEnum):
    groceries = "groceries"
    medicine = "medicine"
    garbage = "garbage"
    home_test = "home_test"
    app_help = "app_help"
    visit = "visit"
    transfer = "transfer"
    other = "other"


class HouseholdFlag(StrEnum):
    elderly_alone = "elderly_alone"
    no_smartphone = "no_smartphone"
    disabled = "disabled"
    home_isolation = "home_isolation"
    close_contact = "close_contact"


class Grid(BaseModel):
    grid_id: str
    name: str
    grid_worker: str
    grid_worker_phone: str
    neighbours: list[str] = Field(default_factory=list)


class OnCall(BaseModel):
    """Who is woken at night, in this order, until someone answers."""

    name: str = Field(min_length=1, max_length=100)
    phone: str = Field(pattern=r"^\+?[0-9]{7,15}$")


class CommunityPolicy(BaseModel):
    # Strict: "50" or true is not a number, nor "yes" a choice (pydantic would coerce them).
    auto_accept_orders: StrictBool = True
    auto_approve_volunteers: StrictBool = False
    duplicate_window_minutes: StrictInt = Field(default=30, ge=0, le=24 * 60)
    # Night: a close-contact transfer or an urgent order then wakes the on-call list.
    on_call: list[OnCall] = Field(default_factory=list, max_length=20)
    night_from_hour: StrictInt = Field(default=22, ge=0, le=24)
    night_until_hour: StrictInt = Field(default=7, ge=0, le=24)
    utc_offset_minutes: StrictInt = Field(default=480, ge=-720, le=840)  # Beijing time
    # The community's clock by name (IANA, e.g. Asia/Shanghai): where given it rules, and
    # knows summer time, which a fixed offset does not.
    time_zone: str | None = Field(default=None, max_length=64, examples=["Asia/Shanghai"])
    urgent_priority: StrictInt = Field(default=80, ge=0, le=100)
    # 外围派单: groceries and medicine come in through the gate (ordered from suppliers at a
    # cut-off); a cadre carries them in once their parcel is there, not before.
    sourced_via_gate: StrictBool = False

    @field_validator("time_zone")
    @classmethod
    def known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{value!r} is not a time zone (e.g. Asia/Shanghai)") from None
        return value

    def clock(self) -> tzinfo:
        return clock_of(self.time_zone, self.utc_offset_minutes)


def sub_district_name(raw: str | None) -> str | None:
    """A sub-district's name in one form, however it was typed (full-width letters and
    spaces, spaces around it or doubled): a community and its officers must name the same
    one, or the officer sees nothing. None when there is no name."""
    name = " ".join(unicodedata.normalize("NFKC", raw or "").split())
    return name or None


def clock_of(time_zone: str | None, utc_offset_minutes: int) -> tzinfo:
    """A community's clock: its named zone, else its fixed UTC offset."""
    if time_zone:
        return ZoneInfo(time_zone)
    return timezone(timedelta(minutes=utc_offset_minutes))


class CommunityDefined(Payload):
    """A community and its grids were created or changed (the whole current picture)."""

    type: Literal["doorstep.community.defined.v1"] = "doorstep.community.defined.v1"
    community_id: str
    name: str
    grids: list[Grid]
    policy: CommunityPolicy = Field(default_factory=CommunityPolicy)
    sub_district: str | None = None  # the 街道 it belongs to: its view sees it


class HouseholdRegistered(Payload):
    type: Literal["doorstep.household.registered.v1"] = "doorstep.household.registered.v1"
    household_id: str
    grid_id: str
    address: str
    phone: str | None = None  # none: reached through the grid worker and the call list
    card_code: str
    flags: list[HouseholdFlag] = Field(default_factory=list)
    relative_phones: list[str] = Field(default_factory=list)  # sign in for the household


class HouseholdCardReissued(Payload):
    """A lost card replaced: the household answers to the new code; the old one is retired
    (never given out again) and no longer finds it."""

    type: Literal["doorstep.household.card_reissued.v1"] = "doorstep.household.card_reissued.v1"
    household_id: str
    card_code: str
    retired_card_code: str


class HouseholdPhonesChanged(Payload):
    """Staff set a household's phones anew (a relative added, a number given up): the
    whole current set; a phone no longer in it no longer signs in for the household."""

    type: Literal["doorstep.household.phones_changed.v1"] = "doorstep.household.phones_changed.v1"
    household_id: str
    address: str
    phone: str | None = None
    relative_phones: list[str] = Field(default_factory=list)


class OrderFacts(BaseModel):
    """What dispatch and notify need to know about an order, carried on its events."""

    order_id: str
    household_id: str
    grid_id: str
    category: Category
    items: str
    priority: int
    address: str
    household_flags: list[HouseholdFlag] = Field(default_factory=list)
    handoff_code: str
    placed_at: datetime
    # Its goods come from outside (外围派单): no cadre is offered it before its parcel is at
    # the community's gate.
    awaits_gate: bool = False
    building: str | None = None  # compound and building: parcels carried in together


class OrderReceived(Payload):
    type: Literal["doorstep.order.received.v1"] = "doorstep.order.received.v1"
    order: OrderFacts
    channel: str


class OrderHeld(Payload):
    """Held for staff review (community policy or a likely duplicate)."""

    type: Literal["doorstep.order.held.v1"] = "doorstep.order.held.v1"
    order: OrderFacts
    reason: str
    duplicate_of: str | None = None


class OrderAccepted(Payload):
    """Taken into the community's queue (接单): dispatch may now offer it."""

    type: Literal["doorstep.order.accepted.v1"] = "doorstep.order.accepted.v1"
    order: OrderFacts


class OrderReopened(Payload):
    """Staff re-opened a failed order: dispatch offers it again."""

    type: Literal["doorstep.order.reopened.v1"] = "doorstep.order.reopened.v1"
    order: OrderFacts


class OrderCancelled(Payload):
    type: Literal["doorstep.order.cancelled.v1"] = "doorstep.order.cancelled.v1"
    order_id: str
    household_id: str
    by_role: str
    reason: str | None = None


class OrderCancelRequested(Payload):
    """Someone asked to cancel an order dispatch is working on: whether it still can be
    depends on the task's state, which dispatch owns. It answers TaskCancelled or
    CancelRefused, and orders tells the caller and the household the true outcome."""

    type: Literal["doorstep.order.cancel_requested.v1"] = "doorstep.order.cancel_requested.v1"
    order_id: str
    household_id: str
    by_role: str
    reason: str | None = None


class OrderStatusChanged(Payload):
    """The order moved on because of a dispatch fact (assigned, picked up, delivered,
    failed). Published by orders, on the community's one partition of orders.events, so
    everything the resident is told about an order arrives in the order it happened."""

    type: Literal["doorstep.order.status_changed.v1"] = "doorstep.order.status_changed.v1"
    order_id: str
    household_id: str
    status: str
    volunteer_name: str | None = None
    failure_reason: str | None = None


class OrderPriorityChanged(Payload):
    type: Literal["doorstep.order.priority_changed.v1"] = "doorstep.order.priority_changed.v1"
    order_id: str
    priority: int


class Address(BaseModel):
    compound: str
    building: str
    unit: str
    room: str

    def __str__(self) -> str:
        return f"{self.compound} {self.building}-{self.unit}-{self.room}"


# --- commands (orders.commands: from any orders instance to the community's owner) ------


class OrdersCommand(Payload):
    command_id: str
    actor: str  # the token subject, for the record


class DefineCommunity(OrdersCommand):
    type: Literal["doorstep.community.define.v1"] = "doorstep.community.define.v1"
    community_id: str
    name: str
    grids: list[Grid]
    policy: CommunityPolicy
    hotline: str | None = None  # the number printed on every contact card
    sub_district: str | None = None


class ReissueCard(OrdersCommand):
    """A lost card: the household gets a new code, and the old one never matches again."""

    type: Literal["doorstep.household.reissue_card.v1"] = "doorstep.household.reissue_card.v1"
    household_id: str


class HouseholdInput(BaseModel):
    line: int  # CSV line (or 0 for a single registration), to report rejections by line
    address: Address
    grid_id: str
    phone: str | None = None
    flags: list[HouseholdFlag] = Field(default_factory=list)
    relative_phones: list[str] = Field(default_factory=list)


class SetHouseholdPhones(OrdersCommand):
    type: Literal["doorstep.household.set_phones.v1"] = "doorstep.household.set_phones.v1"
    household_id: str
    phone: str | None = None
    relative_phones: list[str] = Field(default_factory=list)


class RegisterHouseholds(OrdersCommand):
    type: Literal["doorstep.household.register.v1"] = "doorstep.household.register.v1"
    households: list[HouseholdInput]


class PlaceOrder(OrdersCommand):
    type: Literal["doorstep.order.place.v1"] = "doorstep.order.place.v1"
    household_id: str
    category: Category
    items: str
    channel: str
    role: str
    priority: int | None = None  # staff override
    idempotency_key: str | None = None
    request_hash: str | None = None


class CancelOrder(OrdersCommand):
    type: Literal["doorstep.order.cancel.v1"] = "doorstep.order.cancel.v1"
    order_id: str
    role: str
    reason: str | None = None


class ReopenOrder(OrdersCommand):
    type: Literal["doorstep.order.reopen.v1"] = "doorstep.order.reopen.v1"
    order_id: str


class ReviewOrder(OrdersCommand):
    """Staff take (接单) an order that was held for review."""

    type: Literal["doorstep.order.review.v1"] = "doorstep.order.review.v1"
    order_id: str


class SetPriority(OrdersCommand):
    type: Literal["doorstep.order.set_priority.v1"] = "doorstep.order.set_priority.v1"
    order_id: str
    priority: int


COMMANDS = (
    ReissueCard,
    SetHouseholdPhones,
    DefineCommunity,
    RegisterHouseholds,
    PlaceOrder,
    CancelOrder,
    ReopenOrder,
    ReviewOrder,
    SetPriority,
)

EVENTS = (
    CommunityDefined,
    HouseholdRegistered,
    HouseholdPhonesChanged,
    HouseholdCardReissued,
    OrderReceived,
    OrderHeld,
    OrderAccepted,
    OrderReopened,
    OrderCancelled,
    OrderCancelRequested,
    OrderPriorityChanged,
    OrderStatusChanged,
)
PAYLOADS = COMMANDS + EVENTS
