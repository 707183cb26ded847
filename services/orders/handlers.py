"""Orders' rules, pure: one explicit table from input type to decision. The shared owner
(``shared.owner.CommunityLog``) feeds them a community's commands and dispatch's facts and
stores what they decide as one log entry; the documents they put (community, households,
orders, idempotency keys) are the read models HTTP reads."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from services.orders import domain
from services.orders.domain import Status
from services.orders.views import household_view, order_view
from shared.commands import Outcome
from shared.contracts import dispatch as d
from shared.contracts import orders as o
from shared.events import Event
from shared.owner import Change, Decide, Decision, Documents, Rejection
from shared.topics import ORDERS_EVENTS

COMMUNITIES, HOUSEHOLDS, ORDERS, IDEMPOTENCY = "communities", "households", "orders", "idempotency"
RECENT_ORDERS = 10  # a household's orders the duplicate check looks at


def order_id_for(command_id: str) -> str:
    return "ord_" + command_id[:20]


def household_id_for(command_id: str, line: int) -> str:
    return "hh_" + hashlib.sha256(f"{command_id}:{line}".encode()).hexdigest()[:16]


class Orderbook(Documents):
    """A community's documents, with the lookups its rules need kept beside them."""

    def __init__(self, community_id: str, docs: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__(community_id, docs)
        self.addresses: set[str] = set()
        self.card_codes: set[str] = set()
        self.orders_of: dict[str, list[str]] = {}
        self.placement: list[str] = []  # every order id, in the order they were placed
        for household in self.values(HOUSEHOLDS):
            self._index_household(household)
        for order in sorted(self.values(ORDERS), key=lambda doc: doc["placed_at"]):
            self._index_order(order)

    def put(self, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
        fresh = self.get(kind, doc["_id"]) is None
        doc = super().put(kind, doc)
        if fresh and kind == HOUSEHOLDS:
            self._index_household(doc)
        elif fresh and kind == ORDERS:
            self._index_order(doc)
        return doc

    def _index_household(self, doc: dict[str, Any]) -> None:
        self.addresses.add(doc["address_key"])
        self.card_codes.add(doc["card_code"])

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
    )


# --- communities and households --------------------------------------------------------


def define_community(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, o.DefineCommunity)
    # A grid that still has households cannot go: they would keep a grid nobody works.
    kept = {g.grid_id for g in cmd.grids}
    in_use = Counter(h["grid_id"] for h in book.values(HOUSEHOLDS) if h["grid_id"] not in kept)
    if in_use:
        dropped = ", ".join(f"{g} ({n} households)" for g, n in sorted(in_use.items()))
        raise Rejection(
            409,
            f"grids still in use cannot be removed: {dropped}; keep them in the definition",
            "Grid in use",
        )
    doc = book.put(
        COMMUNITIES,
        {
            "_id": cmd.community_id,
            "name": cmd.name,
            "grids": [g.model_dump() for g in cmd.grids],
            "policy": cmd.policy.model_dump(),
            "updated_at": now,
        },
    )
    defined = o.CommunityDefined(
        community_id=cmd.community_id, name=cmd.name, grids=cmd.grids, policy=cmd.policy
    )
    body = {k: v for k, v in doc.items() if k != "_id"}
    return Decision([defined], Outcome.ok(body, 201))


def register_households(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, o.RegisterHouseholds)
    imported, rejected, events = [], [], []
    for row in cmd.households:
        key = domain.address_key(row.address)
        if key in book.addresses:  # case and spacing do not make another address
            rejected.append(
                {"line": row.line, "reason": "a household at this address is already registered"}
            )
            continue
        doc = book.put(
            HOUSEHOLDS,
            {
                "_id": household_id_for(cmd.command_id, row.line),
                "grid_id": row.grid_id,
                "address": row.address.model_dump(),
                "address_text": str(row.address),
                "address_key": key,
                "phone": row.phone,
                "card_code": book.new_card_code(),
                "flags": [f.value for f in row.flags],
                "registered_at": now,
            },
        )
        events.append(
            o.HouseholdRegistered(
                household_id=doc["_id"],
                grid_id=row.grid_id,
                address=doc["address_text"],
                phone=row.phone,
                card_code=doc["card_code"],
                flags=row.flags,
            )
        )
        imported.append(
            {"line": row.line, "household_id": doc["_id"], "card_code": doc["card_code"]}
        )
    body: dict[str, Any] = {"imported": imported, "rejected": rejected}
    if len(cmd.households) == 1 and imported:  # a single registration answers the household
        body["household"] = household_view(book.get(HOUSEHOLDS, imported[0]["household_id"]) or {})
    return Decision(events, Outcome.ok(body, 201))  # type: ignore[arg-type]


# --- orders ------------------------------------------------------------------------------


def place_order(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, o.PlaceOrder)
    key_id = (
        domain.idempotency_id(cmd.household_id, cmd.role, cmd.actor, cmd.idempotency_key)
        if cmd.idempotency_key
        else None
    )
    if key_id is not None and (first := book.get(IDEMPOTENCY, key_id)) is not None:
        if first["request_hash"] != cmd.request_hash:
            raise Rejection(
                422,
                "this Idempotency-Key was used with a different request",
                "Idempotency key reused",
            )
        return Decision(outcome=Outcome.ok(order_view(book.order(first["order_id"])), 201))
    household = book.get(HOUSEHOLDS, cmd.household_id)
    if household is None:
        raise Rejection(404, "no such household in this community", "Not found")
    policy = book.policy()
    flags = [o.HouseholdFlag(f) for f in household["flags"]]
    order: dict[str, Any] = {
        "_id": order_id_for(cmd.command_id),
        "household_id": cmd.household_id,
        "grid_id": household["grid_id"],
        "address": household["address_text"],
        "household_flags": household["flags"],
        "no_smartphone": o.HouseholdFlag.no_smartphone in flags,
        "category": cmd.category.value,
        "items": cmd.items,
        "channel": cmd.channel,
        "placed_by": cmd.actor,
        "placed_by_role": cmd.role,
        "priority": cmd.priority
        if cmd.priority is not None
        else domain.priority(cmd.category, flags),
        "priority_overridden": cmd.priority is not None,
        "handoff_code": domain.new_handoff_code(),
        "placed_at": now,
        "updated_at": now,
        "escalated": False,
        "volunteer_id": None,
    }
    the_facts = facts(order)
    events: list[o.Payload] = [o.OrderReceived(order=the_facts, channel=cmd.channel)]
    window = domain.window(policy.duplicate_window_minutes)
    duplicate_of = domain.likely_duplicate(
        book.recent_orders(cmd.household_id), cmd.category, now, window
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
    order["history"] = [{"status": s.value, "at": now, "by": cmd.actor} for s in history]
    order = book.put(ORDERS, order)
    if key_id is not None:
        book.put(
            IDEMPOTENCY,
            {"_id": key_id, "request_hash": cmd.request_hash, "order_id": order["_id"]},
        )
    return Decision(events, Outcome.ok(order_view(order), 201))


def _move(
    book: Orderbook,
    order: dict[str, Any],
    to: Status,
    by: str,
    now: datetime,
    **changes: Any,
) -> dict[str, Any]:
    entry = {"status": to.value, "at": now, "by": by}
    return book.put(
        ORDERS,
        {
            **order,
            **changes,
            "status": to.value,
            "updated_at": now,
            "history": [*order.get("history", []), entry],
        },
    )


def cancel_order(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, o.CancelOrder)
    order = book.order(cmd.order_id)
    refusal = domain.cancel_refusal(Status(order["status"]), cmd.role)
    if refusal:
        raise Rejection(409, refusal, "Cannot cancel")
    if order.get("cancel_requested"):
        raise Rejection(409, "a cancel of this order is being decided", "Cannot cancel")
    if order["status"] in domain.WITH_DISPATCH:
        # Dispatch holds the task and knows whether it was picked up: it decides, and the
        # caller is answered when its TaskCancelled or CancelRefused comes back.
        requested = {"command_id": cmd.command_id, "by": cmd.actor, "role": cmd.role}
        book.put(ORDERS, {**order, "cancel_requested": requested | {"reason": cmd.reason}})
        asked = o.OrderCancelRequested(
            order_id=order["_id"],
            household_id=order["household_id"],
            by_role=cmd.role,
            reason=cmd.reason,
        )
        return Decision([asked])
    return _cancelled(book, order, cmd.actor, cmd.role, cmd.reason, now)


def _cancelled(
    book: Orderbook, order: dict[str, Any], by: str, role: str, reason: str | None, now: datetime
) -> Decision:
    order = _move(
        book, order, Status.cancelled, by, now, cancel_reason=reason, cancel_requested=None
    )
    cancelled = o.OrderCancelled(
        order_id=order["_id"], household_id=order["household_id"], by_role=role, reason=reason
    )
    return Decision([cancelled], Outcome.ok(order_view(order)))


def task_cancelled(book: Orderbook, event: Event, now: datetime) -> Decision:
    payload = event.data
    assert isinstance(payload, d.TaskCancelled)
    order = book.get(ORDERS, payload.order.order_id)
    asked = (order or {}).get("cancel_requested")
    if order is None or asked is None:
        return Decision()
    decision = _cancelled(book, order, asked["by"], asked["role"], asked["reason"], now)
    assert decision.outcome is not None
    return Decision(decision.events, answers={asked["command_id"]: decision.outcome})


def cancel_refused(book: Orderbook, event: Event, now: datetime) -> Decision:
    payload = event.data
    assert isinstance(payload, d.CancelRefused)
    order = book.get(ORDERS, payload.order_id)
    asked = (order or {}).get("cancel_requested")
    if order is None or asked is None:
        return Decision()
    book.put(ORDERS, {**order, "cancel_requested": None})
    refusal = Outcome.rejected(409, "Cannot cancel", payload.reason)
    return Decision(answers={asked["command_id"]: refusal})


def reopen_order(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, o.ReopenOrder)
    order = book.order(cmd.order_id)
    if order["status"] not in (Status.failed, Status.cancelled):
        raise Rejection(
            409, f"the order is {order['status']}, not failed or cancelled", "Cannot re-open"
        )
    order = _move(book, order, Status.accepted, cmd.actor, now, volunteer_id=None, failure=None)
    return Decision([o.OrderReopened(order=facts(order))], Outcome.ok(order_view(order)))


def review_order(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, o.ReviewOrder)
    order = book.order(cmd.order_id)
    if order["status"] != Status.held:
        raise Rejection(409, f"the order is {order['status']}", "Not held")
    order = _move(book, order, Status.accepted, cmd.actor, now, hold_reason=None)
    return Decision([o.OrderAccepted(order=facts(order))], Outcome.ok(order_view(order)))


def set_priority(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, o.SetPriority)
    order = book.order(cmd.order_id)
    if order["status"] in domain.FINAL:
        raise Rejection(409, f"the order is {order['status']}", "Order closed")
    order = book.put(ORDERS, {**order, "priority": cmd.priority, "priority_overridden": True})
    changed = o.OrderPriorityChanged(order_id=order["_id"], priority=cmd.priority)
    return Decision([changed], Outcome.ok(order_view(order)))


# --- facts from dispatch -----------------------------------------------------------------


def dispatch_fact(to: Status) -> Decide[Orderbook]:
    def decide(book: Orderbook, event: Event, now: datetime) -> Decision:
        payload = event.data
        order = book.get(ORDERS, payload.order.order_id)  # type: ignore[union-attr]
        if order is None or not domain.can_move(Status(order["status"]), to):
            return Decision()  # a fact about an order that has moved on (cancelled, say)
        changes: dict[str, Any] = {"escalated": False}
        if isinstance(payload, d.TaskAssigned):
            changes |= {
                "volunteer_id": payload.volunteer_id,
                "volunteer_name": payload.volunteer_name,
            }
        if isinstance(payload, d.TaskFailed):
            changes["failure"] = {"reason": payload.reason.value, "note": payload.note}
        if isinstance(payload, d.TaskDelivered):
            changes["proof"] = payload.proof
        by = f"volunteer:{payload.volunteer_id}"  # type: ignore[union-attr]
        order = _move(book, order, to, by, now, **changes)
        changed = o.OrderStatusChanged(
            order_id=order["_id"],
            household_id=order["household_id"],
            status=to.value,
            volunteer_name=order.get("volunteer_name"),
            failure_reason=(order.get("failure") or {}).get("reason")
            if to is Status.failed
            else None,
        )
        return Decision([changed])

    return decide


def escalated(book: Orderbook, event: Event, now: datetime) -> Decision:
    payload = event.data
    assert isinstance(payload, d.OrderEscalated)
    order = book.get(ORDERS, payload.order.order_id)
    if order is not None:
        escalation = {"reason": payload.reason, "at": now, "grid_worker": payload.grid_worker}
        book.put(ORDERS, {**order, "escalated": True, "escalation": escalation})
    return Decision()


class OrdersRules:
    service: str = "orders"
    events_topic: str = ORDERS_EVENTS
    collections: tuple[str, ...] = (COMMUNITIES, HOUSEHOLDS, ORDERS, IDEMPOTENCY)

    def table(self) -> Mapping[type[Any], Decide[Orderbook]]:
        table: dict[type[Any], Callable[[Orderbook, Event, datetime], Decision]] = {
            o.DefineCommunity: define_community,
            o.RegisterHouseholds: register_households,
            o.PlaceOrder: place_order,
            o.CancelOrder: cancel_order,
            o.ReopenOrder: reopen_order,
            o.ReviewOrder: review_order,
            o.SetPriority: set_priority,
            d.TaskAssigned: dispatch_fact(Status.assigned),
            d.TaskPickedUp: dispatch_fact(Status.picked_up),
            d.TaskDelivered: dispatch_fact(Status.delivered),
            d.TaskFailed: dispatch_fact(Status.failed),
            d.OrderEscalated: escalated,
            d.TaskCancelled: task_cancelled,
            d.CancelRefused: cancel_refused,
        }
        return table

    def restore(self, community_id: str, docs: dict[str, list[dict[str, Any]]]) -> Orderbook:
        return Orderbook(community_id, docs)

    def changes(self, book: Orderbook) -> list[Change]:
        return book.take_changes()
