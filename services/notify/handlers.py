"""The notify owner: turns events into per-recipient notifications (insert-only, keyed by
event id and recipient, so a re-delivered event changes nothing), keeps its own copy of
the directory it needs, and hands push notifications to the outbound sender."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.notify import alarms
from services.notify.keypad import phone_key
from services.notify.live import LiveFeed
from services.notify.messages import Message, messages_for
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.events import Event
from shared.gateway import DeliveryFailed, Gateway
from shared.log import get_logger
from shared.mongo import insert_once

log = get_logger(__name__)


class Sequence:
    """Strictly increasing ids for the live stream (Last-Event-ID resumes after one)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> str:
        self._last = max(self._last + 1, time.time_ns())
        return f"{self._last:020d}"

    def current(self) -> str:
        return f"{self._last:020d}"

    def after(self, seq: str) -> None:
        """Never below what is stored (a host whose clock is behind the last one's)."""
        self._last = max(self._last, int(seq))


@dataclass
class Writes:
    """The documents a batch of events adds, by collection; each is insert-once by id.
    A directory entry that changes (a household's phone, its card) is replaced, after the
    inserts, in the order the events came."""

    docs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    replaced: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def add(self, collection: str, doc: dict[str, Any]) -> None:
        self.docs.setdefault(collection, []).append(doc)

    def replace(self, collection: str, doc: dict[str, Any]) -> None:
        self.replaced.append((collection, doc))

    async def store(self, db: AsyncDatabase[dict[str, Any]]) -> dict[str, set[str]]:
        """Insert every collection's documents at once; per collection, the ids that were
        not there (a notification and its call-list entry share an id)."""
        # Notifications last: stored, they count as handled (a retried batch finds them
        # there), so everything they go with must be stored before them.
        others = {n: d for n, d in self.docs.items() if n != "notifications"}
        stored = await asyncio.gather(*(insert_once(db[n], d) for n, d in others.items()))
        for collection, doc in self.replaced:
            await db[collection].replace_one({"_id": doc["_id"]}, doc, upsert=True)
        found = dict(zip(others, stored, strict=True))
        if "notifications" in self.docs:
            found["notifications"] = await insert_once(
                db["notifications"], self.docs["notifications"]
            )
        return found


class NotifyOwner:
    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        gateway: Gateway | None,
        feed: LiveFeed | None = None,
    ) -> None:
        self.db = db
        self.feed = feed
        self.notifications = db["notifications"]
        self.households = db["households"]
        self._directory: dict[str, dict[str, Any]] = {}
        self.call_list = db["call_list"]
        self.deliveries = db["deliveries"]
        self.gateway = gateway
        self.sequence = Sequence()
        # (priority, arrival, text): a night page never waits behind ordinary notifications.
        self.outgoing: asyncio.PriorityQueue[tuple[int, int, dict[str, Any]]] = (
            asyncio.PriorityQueue()
        )
        self._order = itertools.count()
        self._queued: set[str] = set()  # queued and not yet sent (or given up)
        self._policies: dict[str, tuple[o.CommunityPolicy, float]] = {}  # and when read
        self.alarms = db["alarms"]

    async def ensure_indexes(self) -> None:
        await self.notifications.create_index([("recipient", 1), ("seq", 1)])
        await self.notifications.create_index([("seq", 1)])  # the live feed's tail
        await self.db["reads"].create_index([("recipient", 1)])
        await self.call_list.create_index([("community_id", 1), ("created_at", 1)])
        await self.call_list.create_index([("community_id", 1), ("seq", 1)])
        await self.db["grid_workers"].create_index([("community_id", 1), ("defined_at", -1)])
        await self.households.create_index([("phone", 1)])  # who texts from this number
        await self.db["volunteers"].create_index([("phone", 1)])
        await self.alarms.create_index([("created_at", 1)])
        await self.db["pages"].create_index([("alarm_id", 1)])

    async def handle(self, event: Event) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: list[Event]) -> None:
        """A fetch's events together: what each adds is gathered, then stored with one
        insert per collection (every document insert-once by its id, so a re-delivered
        event adds nothing); only what was new is pushed to live streams and the gateway.
        A round trip per notification had been notify's largest cost under load."""
        writes = Writes()
        for event in events:
            await self._take(event, writes)
        # Stamped now, just before the insert (not while the batch was gathered): a stream
        # tailing by seq misses nothing stored a little after it was stamped.
        for doc in writes.docs.get("notifications", []):
            doc["seq"] = self.sequence.next()
        # A call tells a household's messages in the order they happened: one batch stores
        # them in one millisecond, and their ids do not sort as they came; the stamp does.
        stamps = {d["_id"]: d["seq"] for d in writes.docs.get("notifications", [])}
        for entry in writes.docs.get("call_list", []):
            entry["seq"] = stamps.get(entry["_id"], entry.get("seq"))
        fresh = (await writes.store(self.db)).get("notifications", set())
        # Stored before but never sent (the batch failed after the notifications' insert,
        # or the process died before sending): sent now, not left for a restart.
        fresh |= await self._unsent(
            [d for d in writes.docs.get("notifications", []) if d["_id"] not in fresh]
        )
        for doc in writes.docs.get("notifications", []):
            if doc["_id"] not in fresh:
                continue
            fresh.discard(doc["_id"])  # a copy of it later in the batch is not new
            if self.feed is not None:
                self.feed.publish(doc)
            if doc["channel"] == "push" and self.gateway is not None:
                self.send(doc)

    async def _take(self, event: Event, writes: Writes) -> None:
        payload = event.data
        if isinstance(payload, o.CommunityDefined):
            self._policies[event.community_id] = (payload.policy, time.monotonic())
            # Who reaches a household without a phone: each definition kept (insert-once),
            # the latest one read.
            writes.add(
                "grid_workers",
                {
                    "_id": event.id,
                    "community_id": event.community_id,
                    "defined_at": event.time,
                    "grids": {
                        g.grid_id: {"name": g.grid_worker, "phone": g.grid_worker_phone}
                        for g in payload.grids
                    },
                    "policy": payload.policy.model_dump(),
                },
            )
            return
        if isinstance(payload, o.HouseholdRegistered):
            # A household's directory entry is written once: registration is its only fact.
            entry = {
                "_id": payload.household_id,
                "community_id": event.community_id,
                "phone": phone_key(payload.phone) if payload.phone else None,
                "grid_id": payload.grid_id,
                "address": payload.address,
                "card_code": payload.card_code,
                # Without a smartphone, or without any phone: a person calls or knocks.
                "no_smartphone": o.HouseholdFlag.no_smartphone in payload.flags
                or payload.phone is None,
            }
            writes.add("households", entry)
            self._directory[payload.household_id] = entry
            return
        if isinstance(payload, o.HouseholdPhonesChanged | o.HouseholdCardReissued):
            # Keypad replies match the phone, call lists show the card: both follow.
            known = await self.household(payload.household_id)
            if known is not None:
                if isinstance(payload, o.HouseholdPhonesChanged):
                    changed = {"phone": phone_key(payload.phone) if payload.phone else None}
                else:
                    changed = {"card_code": payload.card_code}
                known = {**known, **changed}
                writes.replace("households", known)
                self._directory[payload.household_id] = known
            return
        if isinstance(payload, v.VolunteerApproved):
            # Who texts from this number (keypad replies): insert-once, like households.
            writes.add(
                "volunteers",
                {
                    "_id": f"{event.community_id}:{payload.volunteer_id}",  # one per community
                    "volunteer_id": payload.volunteer_id,
                    "community_id": event.community_id,
                    "phone": phone_key(payload.phone),
                    "name": payload.name,
                },
            )
        if isinstance(payload, o.OrderAccepted | o.OrderHeld):
            # Held for review counts too: at night someone must look at a held transfer.
            await self._maybe_wake(event, payload.order, writes)
        if isinstance(payload, o.OrderReopened):  # a second life: an alarm of its own
            await self._maybe_wake(event, payload.order, writes, f"-{event.id[-12:]}")
        for message in messages_for(payload, event.community_id):
            await self._notify(event, message, writes)

    async def _unsent(self, docs: list[dict[str, Any]]) -> set[str]:
        """Of notifications already stored, those to push that have no delivery state and
        are not queued here now (a re-delivered event whose push did go adds nothing)."""
        ids = [d["_id"] for d in docs if d["channel"] == "push" and d["_id"] not in self._queued]
        if not ids:
            return set()
        done = {d["_id"] async for d in self.deliveries.find({"_id": {"$in": ids}}, {"_id": 1})}
        return set(ids) - done

    def send(self, doc: dict[str, Any], *, urgent: bool = False) -> None:
        """Queue a text for the gateway: night pages before everything else."""
        if doc["_id"] in self._queued:
            return
        self._queued.add(doc["_id"])
        self.outgoing.put_nowait((0 if urgent else 1, next(self._order), doc))

    async def household(self, household_id: str) -> dict[str, Any] | None:
        """The directory entry, read once: it never changes after registration (and a
        read by ``_id`` costs more than anything else notify does per message)."""
        entry = self._directory.get(household_id)
        if entry is None:
            entry = await self.households.find_one({"_id": household_id})
            if entry is not None:
                self._directory[household_id] = entry
        return entry

    async def _notify(self, event: Event, message: Message, writes: Writes) -> None:
        notification_id = f"{event.id}:{message.recipient}"
        channel = "push"
        household = None
        if message.recipient.startswith("household:"):
            household = await self.household(message.recipient.split(":", 1)[1])
            if household and household.get("no_smartphone"):
                channel = "call_list"
        elif not message.recipient.startswith(("volunteer:", "phone:")):
            # Staff and grid workers read their inbox and board; a bare phone (a
            # supplier) is texted, like a cadre.
            channel = "inbox"
        doc = {
            "_id": notification_id,
            "seq": self.sequence.next(),
            "recipient": message.recipient,
            "community_id": event.community_id,
            "kind": message.kind,
            "title": message.title,
            "body": message.body,
            "order_id": message.order_id,
            **({"batch": message.batch} if message.batch else {}),
            "event_id": event.id,
            "event_type": event.type,
            "correlation_id": event.correlation_id,  # the request that set it all off
            "channel": channel,
            "created_at": datetime.now(UTC),
        }
        writes.add("notifications", doc)
        # A household without a smartphone is called about everything; any household is
        # called when its message promises a call (a failed delivery).
        if household is not None and (channel == "call_list" or message.kind in CALLED_BACK):
            # Written even when the notification was stored before (a re-delivery after a
            # crash between the two): insert-once makes sure of the call list.
            writes.add(
                "call_list",
                {
                    "_id": notification_id,
                    "community_id": event.community_id,
                    "household_id": household["_id"],
                    "phone": household.get("phone"),
                    "grid_id": household.get("grid_id"),
                    "address": household["address"],
                    "card_code": household["card_code"],
                    "order_id": message.order_id,
                    "kind": message.kind,
                    "message": message.body,
                    "created_at": doc["created_at"],
                },
            )

    async def send_outgoing(self) -> None:
        """Deliver push notifications through the gateway, recording each one's state."""
        while True:
            _, _, doc = await self.outgoing.get()
            message = {
                "id": doc["_id"],
                "recipient": doc["recipient"],
                "title": doc["title"],
                "body": doc["body"],
                "kind": doc["kind"],
                "order_id": doc["order_id"],
            }
            try:
                assert self.gateway is not None
                await self.gateway.send(message)
                state: dict[str, Any] = {"state": "delivered"}
            except DeliveryFailed as exc:
                state = {"state": "failed", "error": str(exc)}
                log.warning("notify.delivery_failed", notification=doc["_id"], error=str(exc))
            except Exception as exc:  # not the gateway's answer: the text goes again later
                log.error("notify.send_crashed", notification=doc["_id"], error=repr(exc))
                await asyncio.sleep(1.0)
                self.outgoing.put_nowait(
                    (0 if doc["kind"] == "alarm" else 1, next(self._order), doc)
                )
                continue
            self._queued.discard(doc["_id"])
            # Its final state, once (a message sent again after a crash keeps the first).
            with contextlib.suppress(DuplicateKeyError):
                await self.deliveries.insert_one(
                    {"_id": doc["_id"], **state, "at": datetime.now(UTC)}
                )

    # --- night alarms (services.notify.alarms) ----------------------------------------------

    async def policy(self, community_id: str) -> o.CommunityPolicy:
        """The community's latest policy (who is on call at night). Read again after
        ``POLICY_FOR`` seconds: another instance may have taken a newer definition while
        the community's partition was elsewhere, and a page must go to today's list."""
        known = self._policies.get(community_id)
        if known is None or time.monotonic() - known[1] > POLICY_FOR:
            latest = await self.db["grid_workers"].find_one(
                {"community_id": community_id}, sort=[("defined_at", -1)]
            )
            policy = o.CommunityPolicy.model_validate((latest or {}).get("policy") or {})
            known = self._policies[community_id] = (policy, time.monotonic())
        return known[0]

    async def _maybe_wake(
        self, event: Event, order: o.OrderFacts, writes: Writes, life: str = ""
    ) -> None:
        policy = await self.policy(event.community_id)
        if not alarms.wakes(order, policy, event.time):
            return
        what = "close-contact transfer" if order.category == "transfer" else order.category
        writes.add(
            "alarms",
            {
                "_id": f"alarm-{order.order_id}{life}",
                "community_id": event.community_id,
                "order_id": order.order_id,
                "grid_id": order.grid_id,  # a grid worker sees and takes their grid's only
                "on_call": [p.model_dump() for p in policy.on_call],
                "summary": f"{what} for {order.address} (order {order.order_id}).",
                "created_at": event.time,
            },
        )

    async def open_alarms(
        self, since: timedelta = timedelta(days=1), *, taken_too: bool = False
    ) -> list[dict[str, Any]]:
        """Alarms of the last day nobody acknowledged (``taken_too``: all, each with who
        took it, ``taken_by``), with the pages sent so far."""
        recent = await self.alarms.find(
            {"created_at": {"$gte": datetime.now(UTC) - since}}
        ).to_list()
        if not recent:
            return []
        ids = [a["_id"] for a in recent]
        acked = {
            d["_id"]: d.get("by") async for d in self.db["alarm_acks"].find({"_id": {"$in": ids}})
        }
        pages: dict[str, list[dict[str, Any]]] = {}
        async for page in self.db["pages"].find({"alarm_id": {"$in": ids}}):
            pages.setdefault(page["alarm_id"], []).append(page)
        return [
            {
                **a,
                "pages": sorted(pages.get(a["_id"], []), key=lambda p: p["n"]),
                "taken_by": acked.get(a["_id"]),
            }
            for a in recent
            if taken_too or a["_id"] not in acked
        ]

    async def wake_on_call(self, repeat: timedelta, tries: int) -> None:
        """Page whoever is due, forever (a background loop)."""
        while True:
            now = datetime.now(UTC)
            for alarm in await self.open_alarms():
                if await self._settled(alarm):
                    continue
                sent = alarm["pages"]
                due = alarms.next_page(
                    alarm, len(sent), sent[-1]["at"] if sent else None, False, now, repeat, tries
                )
                if due is not None:
                    await self._page(alarm, due, now)
            await asyncio.sleep(min(1.0, repeat.total_seconds() / 2))

    async def _settled(self, alarm: dict[str, Any]) -> bool:
        """The order was taken by a cadre, cancelled or closed since the alarm: nobody
        needs waking any more (acknowledged for them, with the reason)."""
        found = await self.notifications.find_one(
            {
                "order_id": alarm["order_id"],
                "kind": {"$in": list(SETTLES_AN_ALARM)},
                "created_at": {"$gt": alarm["created_at"]},
            }
        )
        if found is None:
            return False
        await self.acknowledge(alarm["_id"], f"order {found['kind'].split('.')[-1]}")
        return True

    async def _page(self, alarm: dict[str, Any], due: alarms.Page, now: datetime) -> None:
        page_id = f"{alarm['_id']}:{due.number}"
        try:  # page n is sent once, whichever notify instance gets here first
            await self.db["pages"].insert_one(
                {
                    "_id": page_id,
                    "alarm_id": alarm["_id"],
                    "n": due.number,
                    "to": due.person,
                    "at": now,
                }
            )
        except DuplicateKeyError:
            return
        log.warning(
            "notify.on_call_paged", alarm=alarm["_id"], to=due.person["name"], page=due.number
        )
        if self.gateway is not None:
            self.send(page_message(page_id, due.person, alarm), urgent=True)

    async def acknowledge(self, alarm_id: str, by: str) -> str | None:
        """None if this took it; else who had taken it already."""
        try:
            await self.db["alarm_acks"].insert_one(
                {"_id": alarm_id, "by": by, "at": datetime.now(UTC)}
            )
        except DuplicateKeyError:
            taken = await self.db["alarm_acks"].find_one({"_id": alarm_id}) or {}
            return str(taken.get("by") or "someone")
        return None

    async def continue_sequence(self, every: float = 5.0) -> None:
        """Stamp after the newest notification stored, whoever stored it: at start (a host
        whose clock is behind the last one's) and every few seconds after (another
        instance's clock ahead of this one's), so that a stream resumed here with the
        other's Last-Event-ID misses nothing stored after it."""
        while True:
            # Only what is stamped above this instance's last stamp: an indexed range that
            # is almost always empty (a sort of the whole collection, every 5 s, had cost
            # every order ~25% of its latency on FerretDB).
            above = {"seq": {"$gt": self.sequence.current()}}
            newest = await self.notifications.find_one(above, {"seq": 1}, sort=[("seq", -1)])
            if newest is not None:
                self.sequence.after(newest["seq"])
            await asyncio.sleep(every)

    async def requeue_unsent(self) -> None:
        """After a restart, push notifications without a final delivery state go again."""
        if self.gateway is None:
            return
        done = {
            d["_id"]
            async for d in self.deliveries.find(
                {"state": {"$in": ["delivered", "failed"]}}, {"_id": 1}
            )
        }
        async for doc in self.notifications.find({"channel": "push"}):
            if doc["_id"] not in done:
                self.send(doc)
        # Pages of alarms still open that never went out (a crash with one queued).
        for alarm in await self.open_alarms():
            for page in alarm["pages"]:
                if page["_id"] not in done:
                    self.send(page_message(page["_id"], page["to"], alarm), urgent=True)


POLICY_FOR = 30.0  # seconds a community's policy is used before it is read again
CALLED_BACK = ("task.failed",)  # messages that tell a household the community will call

# What ends an alarm's paging besides an acknowledgement: the order moved on.
SETTLES_AN_ALARM = (
    "task.assigned",
    "task.picked_up",
    "task.delivered",
    "task.failed",
    "order.cancelled",
)


def page_message(page_id: str, person: dict[str, Any], alarm: dict[str, Any]) -> dict[str, Any]:
    return {
        "_id": page_id,
        "recipient": f"phone:{person['phone']}",
        "title": "紧急 URGENT",
        "body": alarms.page_text(alarm),
        "kind": "alarm",
        "order_id": alarm["order_id"],
    }
