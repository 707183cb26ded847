"""A community's documents as orders' rules see them (households, orders, campaigns), with
the lookups the rules need kept beside them, and the one way an order is opened."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from services.orders import domain
from services.orders.domain import Status
from shared.contracts import orders as o
from shared.contracts.base import Payload
from shared.decision import Documents, Rejection

COMMUNITIES, HOUSEHOLDS, ORDERS, IDEMPOTENCY = "communities", "households", "orders", "idempotency"
CAMPAIGNS, VISITS = "campaigns", "visits"  # door-knock campaigns, one visit per door
CADRES = "cadres"  # who is on duty, from volunteers' events (walk lists go to them)
RECENT_ORDERS = 10  # a household's orders the duplicate check looks at
PARCEL_CHANNELS = ("relative", "gate")  # orders that are parcels: never duplicates


def order_id_for(command_id: str) -> str:
    return "ord_" + command_id[:20]


def household_id_for(command_id: str, line: int) -> str:
    return "hh_" + hashlib.sha256(f"{command_id}:{line}".encode()).hexdigest()[:16]


class Orderbook(Documents):
    """A community's documents, with the lookups its rules need kept beside them."""

    def __init__(self, community_id: str, docs: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__(community_id, docs, scoped={CADRES: "volunteer_id"})
        self._reindex()

    def _reindex(self) -> None:
        self.addresses: dict[str, str] = {}  # address key -> household id
        self.card_codes: set[str] = set()
        self.orders_of: dict[str, list[str]] = {}
        self.placement: list[str] = []  # every order id, in the order they were placed
        for household in self.values(HOUSEHOLDS):
            self._index_household(household)
        for order in sorted(self.values(ORDERS), key=lambda doc: doc["placed_at"]):
            self._index_order(order)

    def rollback(self) -> bool:
        # The lookups only grow as documents are put: built again when a refused command
        # had put a household or an order (rare: a batch refused part-way).
        touched = self.touched()
        super().rollback()
        if touched & {HOUSEHOLDS, ORDERS}:
            self._reindex()
        return True

    def put(self, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
        fresh = self.get(kind, doc["_id"]) is None
        doc = super().put(kind, doc)
        if kind == HOUSEHOLDS:
            self._index_household(doc)
        elif fresh and kind == ORDERS:
            self._index_order(doc)
        return doc

    def _index_household(self, doc: dict[str, Any]) -> None:
        self.addresses[doc["address_key"]] = doc["_id"]
        self.card_codes.update([doc["card_code"], *doc.get("retired_card_codes", [])])

    def _index_order(self, doc: dict[str, Any]) -> None:
        self.placement.append(doc["_id"])
        mine = self.orders_of.setdefault(doc["household_id"], [])
        mine.append(doc["_id"])
        del mine[:-RECENT_ORDERS]

    def newest_first(self) -> Iterator[dict[str, Any]]:
        for order_id in reversed(self.placement):
            doc = self.get(ORDERS, order_id)
            if doc is not None:
                yield doc

    def recent_orders(self, household_id: str) -> list[domain.RecentOrder]:
        return [
            domain.RecentOrder(
                doc["_id"], o.Category(doc["category"]), Status(doc["status"]), doc["placed_at"]
            )
            for order_id in self.orders_of.get(household_id, [])
            if (doc := self.get(ORDERS, order_id)) is not None
            and doc.get("channel") not in PARCEL_CHANNELS  # a parcel is not asked twice
        ]

    def new_card_code(self) -> str:
        while (code := domain.new_card_code()) in self.card_codes:
            pass
        return code

    def order(self, order_id: str) -> dict[str, Any]:
        doc = self.get(ORDERS, order_id)
        if doc is None:
            raise Rejection(404, "no such order", "Not found")
        return doc

    def policy(self) -> o.CommunityPolicy:
        return o.CommunityPolicy.model_validate(
            (self.get(COMMUNITIES, self.community_id) or {}).get("policy", {})
        )


def facts(order: dict[str, Any]) -> o.OrderFacts:
    return o.OrderFacts(
        order_id=order["_id"],
        household_id=order["household_id"],
        grid_id=order["grid_id"],
        category=order["category"],
        items=order["items"],
        priority=order["priority"],
        address=order["address"],
        household_flags=order["household_flags"],
        handoff_code=order["handoff_code"],
        placed_at=order["placed_at"],
        awaits_gate=order.get("awaits_gate", False),
        building=order.get("building"),
    )


def first_request(book: Orderbook, key_id: str | None, request_hash: str | None) -> str | None:
    """The order a request with this Idempotency-Key opened before (a retry after a
    timeout), if any; the same key with another request is refused."""
    first = book.get(IDEMPOTENCY, key_id) if key_id is not None else None
    if first is None:
        return None
    if first["request_hash"] != request_hash:
        raise Rejection(
            422, "this Idempotency-Key was used with a different request", "Idempotency key reused"
        )
    return str(first["order_id"])


def remember_request(
    book: Orderbook, key_id: str | None, request_hash: str | None, order_id: str
) -> None:
    if key_id is not None:
        book.put(IDEMPOTENCY, {"_id": key_id, "request_hash": request_hash, "order_id": order_id})


def open_order(
    book: Orderbook,
    household: dict[str, Any],
    *,
    order_id: str,
    category: o.Category,
    items: str,
    channel: str,
    actor: str,
    role: str,
    priority: int | None,
    now: datetime,
    awaits_gate: bool | None = None,
) -> tuple[dict[str, Any], list[Payload]]:
    """A new order for a household (placed, or a need found at its door): taken into the
    queue, or held for staff when it looks like a duplicate or the community reviews all."""
    policy = book.policy()
    flags = [o.HouseholdFlag(f) for f in household["flags"]]
    order: dict[str, Any] = {
        "_id": order_id,
        "household_id": household["_id"],
        "grid_id": household["grid_id"],
        "address": household["address_text"],
        "building": f"{household['address']['compound']} {household['address']['building']}",
        "household_flags": household["flags"],
        "no_smartphone": o.HouseholdFlag.no_smartphone in flags,
        "category": category.value,
        "items": items,
        "channel": channel,
        "placed_by": actor,
        "placed_by_role": role,
        "priority": priority if priority is not None else domain.priority(category, flags),
        "priority_overridden": priority is not None,
        "handoff_code": domain.new_handoff_code(),
        "placed_at": now,
        "updated_at": now,
        "escalated": False,
        "volunteer_id": None,
        # Goods from outside where the community takes them in at its gate (or a parcel
        # is announced): dispatch waits for the parcel. None: the community's policy says.
        "awaits_gate": awaits_gate
        if awaits_gate is not None
        else policy.sourced_via_gate and category.value in ("groceries", "medicine"),
    }
    the_facts = facts(order)
    events: list[Payload] = [o.OrderReceived(order=the_facts, channel=channel)]
    window = domain.window(policy.duplicate_window_minutes)
    # A parcel (a relative's, one taken in at the gate) is a thing that exists, not a
    # request made twice: never held as a duplicate of the household's own order.
    duplicate_of = (
        None
        if channel in PARCEL_CHANNELS
        else domain.likely_duplicate(book.recent_orders(household["_id"]), category, now, window)
    )
    if duplicate_of or not policy.auto_accept_orders:
        reason = "possible duplicate" if duplicate_of else "held for staff review"
        order |= {"status": Status.held.value, "hold_reason": reason, "duplicate_of": duplicate_of}
        events.append(o.OrderHeld(order=the_facts, reason=reason, duplicate_of=duplicate_of))
        history = [Status.received, Status.held]
    else:
        order["status"] = Status.accepted.value
        events.append(o.OrderAccepted(order=the_facts))
        history = [Status.received, Status.accepted]
    order["history"] = [{"status": s.value, "at": now, "by": actor} for s in history]
    return book.put(ORDERS, order), events
