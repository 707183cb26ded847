"""The orders owner: applies commands and dispatch's facts for the communities whose
partition this instance owns (the only writer of their documents), one explicit table
from payload type to handler.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.encoders import jsonable_encoder
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.orders import domain
from services.orders.domain import Status
from shared import mongo, outbox
from shared.commands import Outcome, once_per_command
from shared.contracts import dispatch as d
from shared.contracts import orders as o
from shared.events import Event
from shared.kafka import EventPublisher
from shared.log import get_logger
from shared.topics import ORDERS_EVENTS

log = get_logger(__name__)
SOURCE = "/orders"


def order_id_for(command_id: str) -> str:
    # Derived from the command, so a re-delivered command finds its own order.
    return "ord_" + command_id[:20]


def household_id_for(command_id: str, line: int) -> str:
    return "hh_" + hashlib.sha256(f"{command_id}:{line}".encode()).hexdigest()[:16]


def order_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The order as clients see it (no outbox, no bookkeeping)."""
    hidden = {"outbox", "applied", "address_key"}
    view = {k: v for k, v in doc.items() if k not in hidden}
    view["order_id"] = view.pop("_id")
    return jsonable_encoder(view)  # type: ignore[no-any-return]  # datetimes at any depth


def household_view(doc: dict[str, Any]) -> dict[str, Any]:
    hidden = {"outbox", "address_key", "recent_orders", "registered_event"}
    view = {k: v for k, v in doc.items() if k not in hidden}
    view["household_id"] = view.pop("_id")
    return view


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


class OrdersOwner:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher) -> None:
        self.db = db
        self.publisher = publisher
        self.communities = db["communities"]
        self.households = db["households"]
        self.orders = db["orders"]
        self.idempotency = db["idempotency"]

    @property
    def table(self) -> dict[type[Any], Callable[[Event], Awaitable[None]]]:
        return {
            o.DefineCommunity: self.command(self.define_community),
            o.RegisterHouseholds: self.command(self.register_households),
            o.PlaceOrder: self.command(self.place_order),
            o.CancelOrder: self.command(self.cancel_order),
            o.ReopenOrder: self.command(self.reopen_order),
            o.ReviewOrder: self.command(self.review_order),
            o.SetPriority: self.command(self.set_priority),
            d.TaskAssigned: self.dispatch_fact(Status.assigned),
            d.TaskPickedUp: self.dispatch_fact(Status.picked_up),
            d.TaskDelivered: self.dispatch_fact(Status.delivered),
            d.TaskFailed: self.dispatch_fact(Status.failed),
            d.OrderEscalated: self.escalated,
        }

    def command(
        self, apply: Callable[[Event, Any], Awaitable[Outcome]]
    ) -> Callable[[Event], Awaitable[None]]:
        return once_per_command(self.db, apply)

    def event(self, cause: Event, payload: o.Payload) -> Event:
        order = getattr(payload, "order", None)
        return cause.follow_up(SOURCE, payload, subject=order and f"order/{order.order_id}")

    async def ensure_indexes(self) -> None:
        await self.households.create_index([("community_id", 1), ("card_code", 1)], unique=True)
        await self.households.create_index([("community_id", 1), ("address_key", 1)], unique=True)
        await self.households.create_index([("community_id", 1), ("phone", 1)])
        await self.orders.create_index([("community_id", 1), ("status", 1)])
        await self.orders.create_index([("household_id", 1), ("placed_at", -1)])

    # --- communities and households ----------------------------------------------------

    async def define_community(self, event: Event, cmd: o.DefineCommunity) -> Outcome:
        defined = o.CommunityDefined(
            community_id=cmd.community_id, name=cmd.name, grids=cmd.grids, policy=cmd.policy
        )
        doc = {
            "name": cmd.name,
            "grids": [g.model_dump() for g in cmd.grids],
            "policy": cmd.policy.model_dump(),
            "updated_at": event.time,
        }
        await self.communities.update_one(
            {"_id": cmd.community_id},
            {
                "$set": doc,
                "$push": {"outbox": {"$each": outbox.entries(self.event(event, defined))}},
            },
            upsert=True,
        )
        await outbox.flush(self.communities, cmd.community_id, self.publisher, ORDERS_EVENTS)
        return Outcome.ok(
            {"community_id": cmd.community_id, **doc, "updated_at": event.time.isoformat()}, 201
        )

    async def register_households(self, event: Event, cmd: o.RegisterHouseholds) -> Outcome:
        community = event.community_id
        keys = {row.line: domain.address_key(row.address) for row in cmd.households}
        existing = {
            doc["address_key"]
            async for doc in self.households.find(
                {"community_id": community, "address_key": {"$in": list(keys.values())}},
                {"address_key": 1},
            )
        }
        rejected = [
            {"line": row.line, "reason": "a household at this address is already registered"}
            for row in cmd.households
            if keys[row.line] in existing
        ]
        docs: list[dict[str, Any]] = []
        for row in cmd.households:
            if keys[row.line] in existing:
                continue
            household_id = household_id_for(cmd.command_id, row.line)
            registered = o.HouseholdRegistered(
                household_id=household_id,
                grid_id=row.grid_id,
                address=str(row.address),
                phone=row.phone,
                card_code=domain.new_card_code(),
                flags=row.flags,
            )
            docs.append(
                {
                    "_id": household_id,
                    "community_id": community,
                    "grid_id": row.grid_id,
                    "address": row.address.model_dump(),
                    "address_text": str(row.address),
                    "address_key": keys[row.line],
                    "phone": row.phone,
                    "card_code": registered.card_code,
                    "flags": [f.value for f in row.flags],
                    "line": row.line,
                    # The event rides in the household's own insert; the import publishes
                    # the batch right after, and a re-delivered import publishes it again
                    # (same ids). Not cleared after: one write per household, not two.
                    "registered_event": outbox.entries(
                        Event(
                            id=f"{household_id}:registered",
                            source=SOURCE,
                            community_id=community,
                            subject=f"household/{household_id}",
                            data=registered,
                        )
                    ),
                }
            )
        await self._insert_households(docs)
        pending = [Event.model_validate(e) for doc in docs for e in doc["registered_event"]]
        if pending:
            await self.publisher.publish_many(ORDERS_EVENTS, pending)
        imported = [
            {"line": doc["line"], "household_id": doc["_id"], "card_code": doc["card_code"]}
            for doc in docs
        ]
        return Outcome.ok({"imported": imported, "rejected": rejected}, 201)

    async def _insert_households(self, docs: list[dict[str, Any]]) -> None:
        """Insert in one batch; a card-code collision (1 in ~10^8) gets a new code and goes
        again, and a household inserted before a crash (same derived id) is kept."""
        while docs:
            try:
                await self.households.insert_many(docs, ordered=False)
                return
            except BulkWriteError as exc:
                failed = {err["index"] for err in exc.details.get("writeErrors", [])}
                retry = []
                for index in sorted(failed):
                    doc = docs[index]
                    if await self.households.find_one({"_id": doc["_id"]}, {"_id": 1}):
                        continue  # a re-delivery
                    doc["card_code"] = domain.new_card_code()
                    doc["registered_event"][0]["data"]["card_code"] = doc["card_code"]
                    retry.append(doc)
                docs = retry

    # --- orders ------------------------------------------------------------------------

    async def place_order(self, event: Event, cmd: o.PlaceOrder) -> Outcome:
        community = event.community_id
        if cmd.idempotency_key:
            first = await self.idempotency.find_one({"_id": f"{cmd.actor}:{cmd.idempotency_key}"})
            if first is not None:
                if first["request_hash"] != cmd.request_hash:
                    return Outcome.rejected(
                        422,
                        "Idempotency key reused",
                        "this Idempotency-Key was used with a different request",
                    )
                existing = await self.orders.find_one({"_id": first["order_id"]})
                return Outcome.ok(order_view(existing or {"_id": first["order_id"]}), 201)
        household = await mongo.find_in_community(self.households, cmd.household_id, community)
        if household is None:
            return Outcome.rejected(404, "Not found", "no such household in this community")
        policy = o.CommunityPolicy.model_validate(
            ((await self.communities.find_one({"_id": community})) or {}).get("policy", {})
        )
        now = event.time
        order_id = order_id_for(cmd.command_id)
        # The household remembers its last orders, so the duplicate check reads a few
        # orders by id instead of querying the whole collection (FerretDB v1 scans it).
        window = domain.window(policy.duplicate_window_minutes)
        recent = []
        for ref in household.get("recent_orders", []):
            if ref["order_id"] == order_id or now - ref["placed_at"] > window:
                continue
            doc = await self.orders.find_one({"_id": ref["order_id"]}, {"status": 1, "category": 1})
            if doc is not None:
                recent.append(
                    domain.RecentOrder(
                        doc["_id"], doc["category"], Status(doc["status"]), ref["placed_at"]
                    )
                )
        flags = [o.HouseholdFlag(f) for f in household["flags"]]
        order: dict[str, Any] = {
            "_id": order_id,
            "community_id": community,
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
            "applied": [],
        }
        the_facts = facts(order)
        events = [self.event(event, o.OrderReceived(order=the_facts, channel=cmd.channel))]
        duplicate_of = domain.likely_duplicate(recent, cmd.category, now, window)
        if duplicate_of or not policy.auto_accept_orders:
            reason = "possible duplicate" if duplicate_of else "held for staff review"
            order |= {
                "status": Status.held.value,
                "hold_reason": reason,
                "duplicate_of": duplicate_of,
            }
            events.append(
                self.event(
                    event, o.OrderHeld(order=the_facts, reason=reason, duplicate_of=duplicate_of)
                )
            )
            history = [Status.received, Status.held]
        else:
            order["status"] = Status.accepted.value
            events.append(self.event(event, o.OrderAccepted(order=the_facts)))
            history = [Status.received, Status.accepted]
        order["history"] = [{"status": s.value, "at": now, "by": cmd.actor} for s in history]
        order["outbox"] = outbox.entries(*events)
        try:
            await self.orders.insert_one(order)
        except DuplicateKeyError:
            order = await self.orders.find_one({"_id": order_id}) or order  # re-delivery
        await outbox.flush(self.orders, order_id, self.publisher, ORDERS_EVENTS)
        remembered = [r for r in household.get("recent_orders", []) if r["order_id"] != order_id]
        await self.households.update_one(
            {"_id": household["_id"]},
            {
                "$set": {
                    "recent_orders": [*remembered[-9:], {"order_id": order_id, "placed_at": now}]
                }
            },
        )
        if cmd.idempotency_key:
            with contextlib.suppress(DuplicateKeyError):
                await self.idempotency.insert_one(
                    {
                        "_id": f"{cmd.actor}:{cmd.idempotency_key}",
                        "request_hash": cmd.request_hash,
                        "order_id": order_id,
                    }
                )
        return Outcome.ok(order_view({**order, "outbox": []}), 201)

    async def _order(self, event: Event, order_id: str) -> dict[str, Any] | None:
        return await mongo.find_in_community(self.orders, order_id, event.community_id)

    async def _move(
        self,
        event: Event,
        order: dict[str, Any],
        to: Status,
        by: str,
        extra: dict[str, Any] | None = None,
        events: list[Event] | None = None,
    ) -> dict[str, Any]:
        entry = {"status": to.value, "at": event.time, "by": by}
        update: dict[str, Any] = {
            "$set": {"status": to.value, "updated_at": event.time, **(extra or {})},
            "$push": {"history": entry, "applied": event.id},
        }
        if events:
            update["$push"]["outbox"] = {"$each": outbox.entries(*events)}
        await self.orders.update_one({"_id": order["_id"]}, update)
        if events:
            await outbox.flush(self.orders, order["_id"], self.publisher, ORDERS_EVENTS)
        return {**order, **update["$set"], "history": [*order.get("history", []), entry]}

    async def cancel_order(self, event: Event, cmd: o.CancelOrder) -> Outcome:
        order = await self._order(event, cmd.order_id)
        if order is None:
            return Outcome.rejected(404, "Not found", "no such order")
        refusal = domain.cancel_refusal(Status(order["status"]), cmd.role)
        if refusal:
            return Outcome.rejected(409, "Cannot cancel", refusal)
        cancelled = o.OrderCancelled(
            order_id=order["_id"],
            household_id=order["household_id"],
            by_role=cmd.role,
            reason=cmd.reason,
        )
        order = await self._move(
            event,
            order,
            Status.cancelled,
            cmd.actor,
            {"cancel_reason": cmd.reason},
            [self.event(event, cancelled)],
        )
        return Outcome.ok(order_view(order))

    async def reopen_order(self, event: Event, cmd: o.ReopenOrder) -> Outcome:
        order = await self._order(event, cmd.order_id)
        if order is None:
            return Outcome.rejected(404, "Not found", "no such order")
        if order["status"] not in (Status.failed, Status.cancelled):
            return Outcome.rejected(
                409, "Cannot re-open", f"the order is {order['status']}, not failed or cancelled"
            )
        order = await self._move(
            event,
            order,
            Status.accepted,
            cmd.actor,
            {"volunteer_id": None, "failure": None},
            [self.event(event, o.OrderReopened(order=facts(order)))],
        )
        return Outcome.ok(order_view(order))

    async def review_order(self, event: Event, cmd: o.ReviewOrder) -> Outcome:
        order = await self._order(event, cmd.order_id)
        if order is None:
            return Outcome.rejected(404, "Not found", "no such order")
        if order["status"] != Status.held:
            return Outcome.rejected(409, "Not held", f"the order is {order['status']}")
        order = await self._move(
            event,
            order,
            Status.accepted,
            cmd.actor,
            {"hold_reason": None},
            [self.event(event, o.OrderAccepted(order=facts(order)))],
        )
        return Outcome.ok(order_view(order))

    async def set_priority(self, event: Event, cmd: o.SetPriority) -> Outcome:
        order = await self._order(event, cmd.order_id)
        if order is None:
            return Outcome.rejected(404, "Not found", "no such order")
        if order["status"] in domain.FINAL:
            return Outcome.rejected(409, "Order closed", f"the order is {order['status']}")
        changed = o.OrderPriorityChanged(order_id=order["_id"], priority=cmd.priority)
        await self.orders.update_one(
            {"_id": order["_id"]},
            {
                "$set": {"priority": cmd.priority, "priority_overridden": True},
                "$push": {"outbox": {"$each": outbox.entries(self.event(event, changed))}},
            },
        )
        await outbox.flush(self.orders, order["_id"], self.publisher, ORDERS_EVENTS)
        return Outcome.ok(
            order_view({**order, "priority": cmd.priority, "priority_overridden": True})
        )

    # --- facts from dispatch -----------------------------------------------------------

    def dispatch_fact(self, to: Status) -> Callable[[Event], Awaitable[None]]:
        async def handle(event: Event) -> None:
            payload = event.data
            order = await self._order(event, payload.order.order_id)  # type: ignore[union-attr]
            if order is None or event.id in order.get("applied", []):
                return
            if not domain.can_move(Status(order["status"]), to):
                log.info(
                    "orders.fact_ignored", order_id=order["_id"], status=order["status"], to=to
                )
                return
            extra: dict[str, Any] = {"escalated": False}
            if isinstance(payload, d.TaskAssigned):
                extra |= {
                    "volunteer_id": payload.volunteer_id,
                    "volunteer_name": payload.volunteer_name,
                }
            if isinstance(payload, d.TaskFailed):
                extra["failure"] = {"reason": payload.reason.value, "note": payload.note}
            if isinstance(payload, d.TaskDelivered):
                extra["proof"] = payload.proof
            changed = o.OrderStatusChanged(
                order_id=order["_id"],
                household_id=order["household_id"],
                status=to.value,
                volunteer_name=extra.get("volunteer_name") or order.get("volunteer_name"),
                failure_reason=extra.get("failure", {}).get("reason"),
            )
            await self._move(
                event,
                order,
                to,
                f"volunteer:{payload.volunteer_id}",
                extra,  # type: ignore[union-attr]
                [self.event(event, changed)],
            )

        return handle

    async def escalated(self, event: Event) -> None:
        payload = event.data
        assert isinstance(payload, d.OrderEscalated)
        if await self._order(event, payload.order.order_id) is None:
            return
        await self.orders.update_one(
            {"_id": payload.order.order_id},
            {
                "$set": {
                    "escalated": True,
                    "escalation": {
                        "reason": payload.reason,
                        "at": event.time,
                        "grid_worker": payload.grid_worker,
                    },
                }
            },
        )
