"""Orders' rules, pure: one explicit table from input type to decision. The shared owner
(``shared.owner.CommunityLog``) feeds them a community's commands and dispatch's facts and
stores what they decide as one log entry; the documents they put (community, households,
orders, idempotency keys) are the read models HTTP reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from services.orders import campaigns, domain, supply
from services.orders.book import (
    CADRES,
    CAMPAIGNS,
    COMMUNITIES,
    HOUSEHOLDS,
    IDEMPOTENCY,
    ORDERS,
    VISITS,
    Orderbook,
    facts,
    first_request,
    household_id_for,
    open_order,
    order_id_for,
    remember_request,
)
from services.orders.domain import Status
from services.orders.views import household_view, order_view
from shared.contracts import campaigns as c
from shared.contracts import dispatch as d
from shared.contracts import orders as o
from shared.contracts import supply as s
from shared.contracts import volunteers as v
from shared.decision import Change, Decide, Decision, Rejection
from shared.events import Event
from shared.outcome import Outcome
from shared.topics import ORDERS_EVENTS

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
            "hotline": cmd.hotline,
            "sub_district": cmd.sub_district,
            "updated_at": now,
        },
    )
    defined = o.CommunityDefined(
        community_id=cmd.community_id,
        name=cmd.name,
        grids=cmd.grids,
        policy=cmd.policy,
        sub_district=cmd.sub_district,
    )
    body = {k: v for k, v in doc.items() if k != "_id"}
    return Decision([defined], Outcome.ok(body, 201))


def register_households(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, o.RegisterHouseholds)
    imported, already, rejected, events = [], [], [], []
    for row in cmd.households:
        key = domain.address_key(row.address)
        there = book.get(HOUSEHOLDS, book.addresses.get(key, ""))
        if there is not None:  # case and spacing do not make another address
            if (there["grid_id"], there.get("phone")) == (row.grid_id, row.phone):
                # The same row again (an import resumed or sent twice): nothing to add.
                already.append(
                    {
                        "line": row.line,
                        "household_id": there["_id"],
                        "card_code": there["card_code"],
                    }
                )
            else:
                rejected.append(
                    {
                        "line": row.line,
                        "reason": "a household at this address is already registered "
                        f"({there['address_text']}, with other details): change it there",
                    }
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
                "relative_phones": row.relative_phones,
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
                relative_phones=row.relative_phones,
            )
        )
        imported.append(
            {"line": row.line, "household_id": doc["_id"], "card_code": doc["card_code"]}
        )
    campaigns.join_open_rounds(book, [book.get(HOUSEHOLDS, i["household_id"]) for i in imported])
    body: dict[str, Any] = {"imported": imported, "already": already, "rejected": rejected}
    if len(cmd.households) == 1 and (imported or already):  # one answers the household
        (one,) = imported or already
        body["household"] = household_view(book.get(HOUSEHOLDS, one["household_id"]) or {})
    return Decision(events, Outcome.ok(body, 201))  # type: ignore[arg-type]


# --- orders ------------------------------------------------------------------------------


def set_household_phones(book: Orderbook, event: Event, now: datetime) -> Decision:
    """The household's phones, anew: who may sign in for it (and be told by SMS)."""
    cmd = event.data
    assert isinstance(cmd, o.SetHouseholdPhones)
    household = book.get(HOUSEHOLDS, cmd.household_id)
    if household is None:
        raise Rejection(404, "no such household in this community", "Not found")
    doc = book.put(
        HOUSEHOLDS, {**household, "phone": cmd.phone, "relative_phones": cmd.relative_phones}
    )
    changed = o.HouseholdPhonesChanged(
        household_id=doc["_id"],
        address=doc["address_text"],
        phone=cmd.phone,
        relative_phones=cmd.relative_phones,
    )
    return Decision([changed], Outcome.ok(household_view(doc)))


def reissue_card(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, o.ReissueCard)
    household = book.get(HOUSEHOLDS, cmd.household_id)
    if household is None:
        raise Rejection(404, "no such household in this community", "Not found")
    retired = [*household.get("retired_card_codes", []), household["card_code"]]
    # The old code stays among the book's codes: it is never given out again.
    doc = book.put(
        HOUSEHOLDS, {**household, "card_code": book.new_card_code(), "retired_card_codes": retired}
    )
    reissued = o.HouseholdCardReissued(
        household_id=doc["_id"], card_code=doc["card_code"], retired_card_code=retired[-1]
    )
    return Decision([reissued], Outcome.ok(household_view(doc)))


def place_order(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, o.PlaceOrder)
    key_id = (
        domain.idempotency_id(cmd.household_id, cmd.role, cmd.actor, cmd.idempotency_key)
        if cmd.idempotency_key
        else None
    )
    if (first := first_request(book, key_id, cmd.request_hash)) is not None:
        return Decision(outcome=Outcome.ok(order_view(book.order(first)), 201))
    household = book.get(HOUSEHOLDS, cmd.household_id)
    if household is None:
        raise Rejection(404, "no such household in this community", "Not found")
    order, events = open_order(
        book,
        household,
        order_id=order_id_for(cmd.command_id),
        category=cmd.category,
        items=cmd.items,
        channel=cmd.channel,
        actor=cmd.actor,
        role=cmd.role,
        priority=cmd.priority,
        now=now,
    )
    remember_request(book, key_id, cmd.request_hash, order["_id"])
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


def task_released(book: Orderbook, event: Event, now: datetime) -> Decision:
    """The cadre who held the order no longer does (off duty, or staff moved it): back to
    taken, waiting for the next cadre; the resident is told (notify hears dispatch)."""
    payload = event.data
    assert isinstance(payload, d.TaskReleased)
    order = book.get(ORDERS, payload.order.order_id)
    if order is None or not domain.can_move(Status(order["status"]), Status.accepted):
        return Decision()  # only offered: the order was still "accepted"; or it moved on
    _move(
        book,
        order,
        Status.accepted,
        f"volunteer:{payload.volunteer_id}",
        now,
        volunteer_id=None,
        volunteer_name=None,
        released={"reason": payload.reason, "from": payload.volunteer_id},
    )
    return Decision()


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
    # A second life: a new handoff code (the old one may have been guessed at five times),
    # and nothing of the first cadre or of the old hold, cancel or failure left on it.
    code = domain.new_handoff_code()
    while code == order["handoff_code"]:
        code = domain.new_handoff_code()
    order = _move(
        book,
        order,
        Status.accepted,
        cmd.actor,
        now,
        handoff_code=code,
        volunteer_id=None,
        volunteer_name=None,
        failure=None,
        hold_reason=None,
        cancel_reason=None,
        released=None,
    )
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
        supply.parcel_moved(book, order, to, now)
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
        every = [*order.get("escalations", []), escalation][-20:]  # each counts on its day
        book.put(
            ORDERS, {**order, "escalated": True, "escalation": escalation, "escalations": every}
        )
    return Decision()


class OrdersRules:
    service: str = "orders"
    events_topic: str = ORDERS_EVENTS
    collections: tuple[str, ...] = (
        COMMUNITIES,
        HOUSEHOLDS,
        ORDERS,
        IDEMPOTENCY,
        CAMPAIGNS,
        VISITS,
        CADRES,
        supply.SUPPLIERS,
        supply.SUPPLIER_ORDERS,
        supply.PARCELS,
    )

    def table(self) -> Mapping[type[Any], Decide[Orderbook]]:
        table: dict[type[Any], Callable[[Orderbook, Event, datetime], Decision]] = {
            o.DefineCommunity: define_community,
            o.RegisterHouseholds: register_households,
            o.PlaceOrder: place_order,
            o.ReissueCard: reissue_card,
            o.SetHouseholdPhones: set_household_phones,
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
            d.TaskReleased: task_released,
            d.CancelRefused: cancel_refused,
            c.StartCampaign: campaigns.start_campaign,
            c.TakeWalkList: campaigns.take_walk_list,
            c.RecordVisits: campaigns.record_visits,
            c.HandToGridWorker: campaigns.hand_to_grid_worker,
            c.CloseCampaign: campaigns.close_campaign,
            s.DefineSupplier: supply.define_supplier,
            s.SetSupplierIntake: supply.set_intake,
            s.SendSupplierOrder: supply.send_supplier_order,
            s.ScanParcel: supply.scan_parcel,
            s.RegisterParcel: supply.register_parcel,
            s.AnnounceParcel: supply.announce_parcel,
            v.VolunteerApproved: campaigns.cadre_approved,
            v.ShiftStarted: campaigns.shift_started,
            v.ShiftEnded: campaigns.shift_ended,
        }
        return table

    def restore(self, community_id: str, docs: dict[str, list[dict[str, Any]]]) -> Orderbook:
        return Orderbook(community_id, docs)

    def changes(self, book: Orderbook) -> list[Change]:
        return book.take_changes()
