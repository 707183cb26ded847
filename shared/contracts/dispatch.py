"""Dispatch's commands (``dispatch.commands``) and events (``dispatch.events``).

Commands carry a volunteer's answer from whichever instance took the HTTP call to the one
dispatch instance that owns the community's partition.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from shared.contracts.base import Payload


class FailureReason(StrEnum):
    not_home = "not_home"
    wrong_address = "wrong_address"
    refused = "refused"
    other = "other"


# --- commands -------------------------------------------------------------------------


class VolunteerCommand(Payload):
    command_id: str
    order_id: str
    volunteer_id: str


class AcceptOffer(VolunteerCommand):
    type: Literal["doorstep.offer.accept.v1"] = "doorstep.offer.accept.v1"


class DeclineOffer(VolunteerCommand):
    type: Literal["doorstep.offer.decline.v1"] = "doorstep.offer.decline.v1"


class PickUp(VolunteerCommand):
    type: Literal["doorstep.task.pick_up.v1"] = "doorstep.task.pick_up.v1"


class TakeBatch(Payload):
    """A cadre at the gate takes a building's parcels as one: the offers among them
    accepted, then every one picked up (``pick_up``) or only accepted. Each is decided as
    its own answer would be; one no longer theirs (lapsed, cancelled) is listed as refused
    and the rest go ahead."""

    type: Literal["doorstep.task.take_batch.v1"] = "doorstep.task.take_batch.v1"
    command_id: str
    volunteer_id: str
    order_ids: list[str]
    pick_up: bool = False


class Deliver(VolunteerCommand):
    type: Literal["doorstep.task.deliver.v1"] = "doorstep.task.deliver.v1"
    handoff_code: str | None = None
    photo_url: str | None = None


class ReportFailure(VolunteerCommand):
    type: Literal["doorstep.task.fail.v1"] = "doorstep.task.fail.v1"
    reason: FailureReason
    note: str | None = None


class OfferAgain(Payload):
    """Staff send an escalated order round again: whoever let it pass may be asked again."""

    type: Literal["doorstep.task.offer_again.v1"] = "doorstep.task.offer_again.v1"
    command_id: str
    actor: str
    order_id: str
    grid_id: str | None = None  # a grid worker's: only an order of that grid


class OfferTo(Payload):
    """Staff give a waiting order to the cadre they chose (reassign), as an offer."""

    type: Literal["doorstep.task.offer_to.v1"] = "doorstep.task.offer_to.v1"
    command_id: str
    actor: str
    order_id: str
    volunteer_id: str
    grid_id: str | None = None  # a grid worker's: only an order of that grid


# --- events ---------------------------------------------------------------------------


class OrderRef(BaseModel):
    order_id: str
    household_id: str
    grid_id: str


class DeliverByCode(Payload):
    """A cadre at a door texts the household's code ("D 4821"), not the order: the task of
    theirs whose code it is is delivered (a plain phone cannot say which order it means)."""

    type: Literal["doorstep.task.deliver_by_code.v1"] = "doorstep.task.deliver_by_code.v1"
    command_id: str
    volunteer_id: str
    handoff_code: str


class ReleaseTask(Payload):
    """Staff take a task from the cadre holding it (gone off duty, unreachable): offered
    to the cadre they chose, or back to the queue; the reason stays in the audit trail."""

    type: Literal["doorstep.task.release.v1"] = "doorstep.task.release.v1"
    command_id: str
    actor: str
    order_id: str
    reason: str
    volunteer_id: str | None = None  # None: back to the queue
    grid_id: str | None = None  # a grid worker's: only an order of that grid


class UnlockTask(Payload):
    """Staff lift the lock five wrong handoff codes put on a delivery (they checked)."""

    type: Literal["doorstep.task.unlock.v1"] = "doorstep.task.unlock.v1"
    command_id: str
    actor: str
    order_id: str
    reason: str
    grid_id: str | None = None


class OfferMade(Payload):
    type: Literal["doorstep.offer.made.v1"] = "doorstep.offer.made.v1"
    order: OrderRef
    volunteer_id: str
    expires_at: datetime
    category: str
    address: str
    items: str
    attempt: int
    # A parcel taken from the gate: the building its batch goes to (offers with the same
    # one are answered together, by the app or by one SMS reply).
    building: str | None = None


class OfferDeclined(Payload):
    type: Literal["doorstep.offer.declined.v1"] = "doorstep.offer.declined.v1"
    order: OrderRef
    volunteer_id: str


class OfferExpired(Payload):
    type: Literal["doorstep.offer.expired.v1"] = "doorstep.offer.expired.v1"
    order: OrderRef
    volunteer_id: str


class OfferWithdrawn(Payload):
    type: Literal["doorstep.offer.withdrawn.v1"] = "doorstep.offer.withdrawn.v1"
    order: OrderRef
    volunteer_id: str
    reason: str


class TaskAssigned(Payload):
    type: Literal["doorstep.task.assigned.v1"] = "doorstep.task.assigned.v1"
    order: OrderRef
    volunteer_id: str
    volunteer_name: str


class TaskPickedUp(Payload):
    type: Literal["doorstep.task.picked_up.v1"] = "doorstep.task.picked_up.v1"
    order: OrderRef
    volunteer_id: str


class TaskDelivered(Payload):
    type: Literal["doorstep.task.delivered.v1"] = "doorstep.task.delivered.v1"
    order: OrderRef
    volunteer_id: str
    proof: Literal["handoff_code", "photo"]
    photo_url: str | None = None


class TaskFailed(Payload):
    type: Literal["doorstep.task.failed.v1"] = "doorstep.task.failed.v1"
    order: OrderRef
    volunteer_id: str
    reason: FailureReason
    note: str | None = None


class OrderEscalated(Payload):
    """Nobody suitable is free: the order's grid worker must act."""

    type: Literal["doorstep.order.escalated.v1"] = "doorstep.order.escalated.v1"
    order: OrderRef
    grid_worker: str
    grid_worker_phone: str
    reason: str


class TaskReleased(Payload):
    """A task taken from the cadre who held it: they went off duty before picking it up,
    or staff moved it. ``state``: what the cadre had — offered, assigned, picked_up (the
    goods were with them)."""

    type: Literal["doorstep.task.released.v1"] = "doorstep.task.released.v1"
    order: OrderRef
    volunteer_id: str
    reason: str
    state: Literal["offered", "assigned", "picked_up"]


class TaskUnlocked(Payload):
    type: Literal["doorstep.task.unlocked.v1"] = "doorstep.task.unlocked.v1"
    order: OrderRef
    volunteer_id: str | None
    reason: str


class TaskCancelled(Payload):
    """A requested cancel held: the task left the board (a volunteer holding it was told)."""

    type: Literal["doorstep.task.cancelled.v1"] = "doorstep.task.cancelled.v1"
    order: OrderRef
    by_role: str


class CancelRefused(Payload):
    """A requested cancel came too late: picked up (for a resident), or no longer open."""

    type: Literal["doorstep.task.cancel_refused.v1"] = "doorstep.task.cancel_refused.v1"
    order_id: str
    reason: str


class ExpireOffer(VolunteerCommand):
    """The owner's own timer: the offer's deadline passed (a command, so it is ordered
    with the volunteer's answer and survives a change of owner)."""

    type: Literal["doorstep.offer.expire.v1"] = "doorstep.offer.expire.v1"
    attempt: int


class EscalateLateOrder(Payload):
    """The owner's own timer: an order is still not taken long after it was placed."""

    type: Literal["doorstep.order.escalate_late.v1"] = "doorstep.order.escalate_late.v1"
    command_id: str
    order_id: str


COMMANDS = (
    AcceptOffer,
    DeclineOffer,
    PickUp,
    TakeBatch,
    Deliver,
    ReportFailure,
    ExpireOffer,
    EscalateLateOrder,
    OfferAgain,
    OfferTo,
    ReleaseTask,
    UnlockTask,
    DeliverByCode,
)
EVENTS = (
    OfferMade,
    OfferDeclined,
    OfferExpired,
    OfferWithdrawn,
    TaskAssigned,
    TaskPickedUp,
    TaskDelivered,
    TaskFailed,
    OrderEscalated,
    TaskCancelled,
    CancelRefused,
    TaskReleased,
    TaskUnlocked,
)
PAYLOADS = COMMANDS + EVENTS
