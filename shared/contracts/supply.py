"""外围派单, sourcing: what residents need comes from outside the sealed area — a
supermarket, a pharmacy, a group buy — and is ordered from it at a cut-off, consolidated.
Commands on ``orders.commands``, events on ``orders.events``: orders owns the households
and their orders, so the supplier orders made of them are decided with them, by one
owner, in one insert."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from shared.contracts.base import Payload
from shared.contracts.orders import Address, Category, OrdersCommand


class SupplierKind(StrEnum):
    supermarket = "supermarket"
    pharmacy = "pharmacy"
    group_buy = "group_buy"  # 团购: an organiser with the permit the office issued


# What comes from outside: the rest (garbage, a visit, a home test) is dispatched as it is.
SOURCED = (Category.groceries, Category.medicine)


# --- commands -------------------------------------------------------------------------


class DefineSupplier(OrdersCommand):
    type: Literal["doorstep.supplier.define.v1"] = "doorstep.supplier.define.v1"
    supplier_id: str
    name: str
    kind: SupplierKind
    contact_name: str
    phone: str
    permit_number: str | None = None
    serves: list[Category]


class SetSupplierIntake(OrdersCommand):
    """Staff stop a supplier's intake (a new case, a bad delivery) or take it again."""

    type: Literal["doorstep.supplier.set_intake.v1"] = "doorstep.supplier.set_intake.v1"
    supplier_id: str
    open: bool
    reason: str


class SendSupplierOrder(OrdersCommand):
    """The cut-off: every order that needs this supplier's goods and is not ordered yet,
    consolidated into one supplier order."""

    type: Literal["doorstep.supplier_order.send.v1"] = "doorstep.supplier_order.send.v1"
    supplier_order_id: str
    supplier_id: str


class ParcelCondition(StrEnum):
    ok = "ok"
    short = "short"  # lines missing
    substituted = "substituted"  # something else in their place
    damaged = "damaged"


class ScanParcel(OrdersCommand):
    """At the gate: a parcel's label scanned or typed — it is here, in this condition."""

    type: Literal["doorstep.parcel.scan.v1"] = "doorstep.parcel.scan.v1"
    code: str
    condition: ParcelCondition = ParcelCondition.ok
    note: str | None = None


class RegisterParcel(OrdersCommand):
    """At the gate, a parcel nobody announced: registered by the address written on it
    (and the last four digits of the household's phone), an order to carry it opened."""

    type: Literal["doorstep.parcel.register.v1"] = "doorstep.parcel.register.v1"
    address: Address
    phone_last4: str
    category: Category
    note: str | None = None
    idempotency_key: str | None = None  # the gate's phone retrying: one parcel
    request_hash: str | None = None


class AnnounceParcel(OrdersCommand):
    """A relative outside sends a household something: expected at the gate, its label's
    code to write on it."""

    type: Literal["doorstep.parcel.announce.v1"] = "doorstep.parcel.announce.v1"
    household_id: str
    from_name: str
    items: str
    category: Category
    idempotency_key: str | None = None  # a retry after a timeout: one parcel
    request_hash: str | None = None


# --- events ---------------------------------------------------------------------------


class SupplierDefined(Payload):
    type: Literal["doorstep.supplier.defined.v1"] = "doorstep.supplier.defined.v1"
    supplier_id: str
    name: str
    kind: SupplierKind
    serves: list[Category]


class SupplierIntakeChanged(Payload):
    type: Literal["doorstep.supplier.intake_changed.v1"] = "doorstep.supplier.intake_changed.v1"
    supplier_id: str
    open: bool
    reason: str


class SupplierOrderSent(Payload):
    """A supplier order went out: the supplier is texted its link."""

    type: Literal["doorstep.supplier_order.sent.v1"] = "doorstep.supplier_order.sent.v1"
    supplier_order_id: str
    supplier_id: str
    supplier_name: str
    phone: str
    order_ids: list[str] = Field(default_factory=list)
    lines: int  # consolidated lines (groceries) and households (medicine)


class ParcelArrived(Payload):
    """A parcel is at the gate; not as ordered when its condition says so."""

    type: Literal["doorstep.parcel.arrived.v1"] = "doorstep.parcel.arrived.v1"
    code: str
    order_id: str
    household_id: str
    address: str
    category: Category
    condition: ParcelCondition
    note: str | None = None


COMMANDS = (
    DefineSupplier,
    SetSupplierIntake,
    SendSupplierOrder,
    ScanParcel,
    RegisterParcel,
    AnnounceParcel,
)
EVENTS = (SupplierDefined, SupplierIntakeChanged, SupplierOrderSent, ParcelArrived)
PAYLOADS = (*COMMANDS, *EVENTS)
