"""Who is told what about which event. Pure: an event and the directory in, messages out.

Residents hear of their order only from orders' own events (one partition per community),
so the steps reach them in the order they happened; volunteers and staff hear of offers
and failures from dispatch's events."""

from __future__ import annotations

from dataclasses import dataclass

from services.notify.keypad import HOUSEHOLD_DIGITS, VOLUNTEER_DIGITS
from shared.contracts import campaigns as c
from shared.contracts import dispatch as d
from shared.contracts import orders as o
from shared.contracts.base import Payload

CATEGORY_NAMES = {
    "groceries": "groceries",
    "medicine": "medicine",
    "garbage": "garbage pickup",
    "home_test": "home test",
    "app_help": "app help",
    "visit": "visit",
    "transfer": "transfer",
    "other": "request",
}


@dataclass(frozen=True)
class Message:
    recipient: (
        str  # household:<id> | volunteer:<id> | staff:<community> | grid_worker:<community>:<grid>
    )
    kind: str
    title: str
    body: str
    order_id: str | None = None


def household(household_id: str) -> str:
    return f"household:{household_id}"


def messages_for(payload: Payload, community_id: str) -> list[Message]:
    staff = f"staff:{community_id}"
    match payload:
        case o.OrderAccepted(order=order):
            what = CATEGORY_NAMES.get(order.category, "request")
            return [
                Message(
                    household(order.household_id),
                    "order.accepted",
                    "Order taken",
                    f"The community has taken your {what} order; a volunteer will be found.",
                    order.order_id,
                )
            ]
        case o.OrderHeld(order=order, reason=reason):
            return [
                Message(
                    staff,
                    "order.held",
                    "Order held for review",
                    f"Order {order.order_id} ({order.category}, {order.address}): {reason}.",
                    order.order_id,
                )
            ]
        case o.OrderCancelled(order_id=order_id, household_id=household_id):
            return [
                Message(
                    household(household_id),
                    "order.cancelled",
                    "Order cancelled",
                    "Your order was cancelled.",
                    order_id,
                )
            ]
        case d.OfferMade(
            order=ref, volunteer_id=vid, category=category, address=address, items=items
        ):
            return [
                Message(
                    f"volunteer:{vid}",
                    "offer.made",
                    "New task offered",
                    f"{CATEGORY_NAMES.get(category, category)} to {address}: {items}. "
                    f"{VOLUNTEER_DIGITS}",
                    ref.order_id,
                )
            ]
        case d.OfferWithdrawn(order=ref, volunteer_id=vid, reason=reason):
            return [
                Message(
                    f"volunteer:{vid}",
                    "offer.withdrawn",
                    "Offer withdrawn",
                    f"The offer for order {ref.order_id} was withdrawn ({reason}).",
                    ref.order_id,
                )
            ]
        case d.TaskReleased(order=ref, volunteer_id=vid, reason=reason, state=state):
            goods = (
                " You have the goods: hand them to the cadre the community sends, or bring "
                "them back to the community office."
                if state == "picked_up"
                else ""
            )
            told = [
                Message(
                    f"volunteer:{vid}",
                    "task.released",
                    "Task taken from you",
                    f"Order {ref.order_id} is no longer yours ({reason}).{goods}",
                    ref.order_id,
                )
            ]
            if state != "offered":  # the household was told a volunteer was coming
                told.append(
                    Message(
                        household(ref.household_id),
                        "task.released",
                        "Another volunteer",
                        "Your volunteer cannot bring your order after all; another volunteer "
                        "will bring it.",
                        ref.order_id,
                    )
                )
            return told
        case d.OfferExpired(order=ref, volunteer_id=vid):
            return [
                Message(
                    f"volunteer:{vid}",
                    "offer.expired",
                    "Offer lapsed",
                    f"The offer for order {ref.order_id} went to someone else.",
                    ref.order_id,
                )
            ]
        case o.OrderStatusChanged(
            order_id=order_id,
            household_id=household_id,
            status=status,
            volunteer_name=name,
            failure_reason=reason,
        ):
            steps: dict[str, tuple[str, str, str]] = {
                "assigned": (
                    "task.assigned",
                    "Volunteer assigned",
                    f"{name or 'A volunteer'} will bring your order.",
                ),
                "picked_up": (
                    "task.picked_up",
                    "On the way",
                    f"{name or 'Your volunteer'} has picked up your order and is on the way.",
                ),
                "delivered": (
                    "task.delivered",
                    "Delivered",
                    f"Your order was delivered to your door. {HOUSEHOLD_DIGITS}",
                ),
                "failed": (
                    "task.failed",
                    "Delivery failed",
                    "We could not deliver your order; the community will call you.",
                ),
            }
            if status not in steps:
                return []
            kind, title, body = steps[status]
            return [Message(household(household_id), kind, title, body, order_id)]
        case d.TaskFailed(order=ref, reason=reason, note=note):
            detail = f"{reason.value}{f': {note}' if note else ''}"
            return [
                Message(
                    staff,
                    "task.failed",
                    "Delivery failed",
                    f"Order {ref.order_id} failed ({detail}): retry or close.",
                    ref.order_id,
                )
            ]
        case d.OrderEscalated(order=ref, grid_worker=worker, reason=reason):
            summary = f"Order {ref.order_id} in grid {ref.grid_id} needs a volunteer: {reason}."
            return [
                Message(
                    f"grid_worker:{community_id}:{ref.grid_id}",
                    "order.escalated",
                    "Escalated to you",
                    f"{worker}: {summary}",
                    ref.order_id,
                ),
                Message(staff, "order.escalated", "Order escalated", summary, ref.order_id),
            ]
        case c.HandedToGridWorker(
            grid_id=grid_id, grid_worker=worker, address=address, household_id=household_id
        ):
            return [
                Message(
                    f"grid_worker:{community_id}:{grid_id}",
                    "campaign.handed_over",
                    "A door that never answers",
                    f"{worker}: {address} did not answer the door-knock round; please reach "
                    f"them (household {household_id}).",
                )
            ]
    return []
