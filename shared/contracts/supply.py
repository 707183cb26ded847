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
from shared.contracts.orders import Category, OrdersCommand


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


COMMANDS = (DefineSupplier, SetSupplierIntake, SendSupplierOrder)
EVENTS = (SupplierDefined, SupplierIntakeChanged, SupplierOrderSent)
PAYLOADS = (*COMMANDS, *EVENTS)
