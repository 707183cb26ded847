"""HTTP API of the notify service (under /v1): the inbox, its live stream, the call list."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import Field
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.notify.live import LiveFeed, TooManyStreams
from shared import mongo
from shared.api import Db, StrictBody
from shared.auth import CurrentPrincipal, Principal, Role, require
from shared.http import Problem

router = APIRouter(prefix="/v1")


def inbox_of(principal: Principal, recipient: str | None) -> str:
    """The inbox this principal may read: their own, or (staff) a grid worker's of their
    community."""
    if recipient is None or recipient == principal.recipient:
        require(principal, Role.resident, Role.volunteer, Role.staff)
        return principal.recipient
    if principal.role is Role.staff and recipient.startswith(
        f"grid_worker:{principal.community_id}:"
    ):
        return recipient
    raise Problem(403, "Forbidden", "not your inbox")


async def requested_inbox(
    principal: CurrentPrincipal,
    recipient: Annotated[str | None, Query(max_length=200)] = None,
) -> str:
    """The inbox asked for, authorised before any answer starts (a live stream's refusal
    raised inside the stream would come after its 200)."""
    return inbox_of(principal, recipient)


Inbox = Annotated[str, Depends(requested_inbox)]
BACKLOG_PAGE = 100


async def live_feed(request: Request) -> LiveFeed:
    return request.app.state.feed  # type: ignore[no-any-return]


Feed = Annotated[LiveFeed, Depends(live_feed)]


async def streamed_inbox(who: Inbox, feed: Feed) -> str:
    """The inbox, if it has room for one more live stream: refused before the stream
    starts (429), as every refusal of a stream must be."""
    if feed.open_streams(who) >= feed.per_recipient:
        raise Problem(
            429,
            "Too many streams",
            f"at most {feed.per_recipient} live streams per inbox; close one",
            headers={"Retry-After": "10"},
        )
    return who


StreamedInbox = Annotated[str, Depends(streamed_inbox)]


def view(doc: dict[str, Any], read: set[str]) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "seq": doc["seq"],
        "kind": doc["kind"],
        "title": doc["title"],
        "body": doc["body"],
        "order_id": doc.get("order_id"),
        "channel": doc["channel"],
        "trace_id": doc.get("correlation_id"),
        "created_at": doc["created_at"].isoformat(),
        "read": doc["_id"] in read,
    }


async def inbox_size(database: AsyncDatabase[dict[str, Any]], recipient: str) -> int:
    # The count command rather than count_documents (an aggregation): the local FerretDB
    # counts it in SQLite's index instead of reading every notification (patches.json).
    found = await database.command("count", "notifications", query={"recipient": recipient})
    return int(found["n"])


async def read_ids(database: AsyncDatabase[dict[str, Any]], recipient: str) -> set[str]:
    return {d["_id"] async for d in database["reads"].find({"recipient": recipient}, {"_id": 1})}


@router.get(
    "/inbox", tags=["inbox"], summary="Your notifications, newest first, with the unread count"
)
async def inbox(
    principal: CurrentPrincipal,
    database: Db,
    recipient: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[
        str | None,
        Query(pattern=r"^[0-9]{20}$", description="Page cursor: next_cursor of the previous page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    who = inbox_of(principal, recipient)
    query: dict[str, Any] = {"recipient": who}
    if before:
        query["seq"] = {"$lt": before}
    # Three independent reads, sent at once.
    docs, read, total = await asyncio.gather(
        database["notifications"].find(query).sort("seq", -1).limit(limit).to_list(),
        read_ids(database, who),
        inbox_size(database, who),
    )
    return {
        "items": [view(d, read) for d in docs],
        "unread": total - len(read),
        "next_cursor": docs[-1]["seq"] if len(docs) == limit else None,
    }


@router.get("/inbox/unread-count", tags=["inbox"])
async def unread_count(
    principal: CurrentPrincipal,
    database: Db,
    recipient: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, int]:
    who = inbox_of(principal, recipient)
    total, read = await asyncio.gather(inbox_size(database, who), read_ids(database, who))
    return {"unread": total - len(read)}


@router.post("/inbox/{notification_id}/read", tags=["inbox"], summary="Mark one notification read")
async def mark_read(
    notification_id: str, principal: CurrentPrincipal, database: Db
) -> dict[str, Any]:
    doc = await database["notifications"].find_one({"_id": notification_id}, {"recipient": 1})
    if doc is None:
        raise Problem(404, "Not found", "no such notification")
    try:
        inbox_of(principal, doc["recipient"])
    except Problem:
        raise Problem(404, "Not found", "no such notification") from None
    try:  # insert-only, so two devices marking at once cannot clash
        await database["reads"].insert_one(
            {"_id": notification_id, "recipient": doc["recipient"], "at": datetime.now(UTC)}
        )
    except DuplicateKeyError:
        pass
    return {"id": notification_id, "read": True}


@router.get(
    "/inbox/stream",
    tags=["inbox"],
    response_class=EventSourceResponse,
    summary="Live notifications (server-sent events); resume with Last-Event-ID",
)
async def stream(
    who: StreamedInbox,
    feed: Feed,
    database: Db,
    last_event_id: Annotated[str | None, Header(pattern=r"^[0-9]{20}$")] = None,
) -> AsyncIterable[ServerSentEvent]:
    """Each new notification as the feed pushes it (services.notify.live) — no polling.
    A stream starts from now (the inbox page is the history), announced by a ``live``
    comment; one resumed with Last-Event-ID first gets what was stored since that id."""
    sent = Sent()
    after = last_event_id or ""
    with contextlib.suppress(TooManyStreams):  # lost a race for the last place: just end
        async with feed.subscribe(who) as pushed:
            yield ServerSentEvent(comment="live")
            while last_event_id:  # subscribed first, so nothing stored meanwhile is missed
                docs = (
                    await database["notifications"]
                    .find({"recipient": who, "seq": {"$gt": after}})
                    .sort("seq", 1)
                    .to_list(BACKLOG_PAGE)
                )
                for doc in docs:
                    after = doc["seq"]
                    if sent.first(doc["_id"]):
                        yield ServerSentEvent(
                            id=doc["seq"], event=doc["kind"], data=view(doc, set())
                        )
                if len(docs) < BACKLOG_PAGE:
                    break
            # Whatever the feed pushes was stored after this stream subscribed: new to it,
            # whatever its seq says (stamped before its insert, or on a host whose clock is
            # behind); only what the backlog already gave is skipped, by id.
            while (news := await pushed.get()) is not None:  # None: too far behind, end
                if sent.first(news["_id"]):
                    yield ServerSentEvent(
                        id=news["seq"], event=news["kind"], data=view(news, set())
                    )


class Sent:
    """The ids one stream has sent (the newest ``REMEMBER``): each notification once."""

    REMEMBER = 5000

    def __init__(self) -> None:
        self._ids: dict[str, None] = {}

    def first(self, notification_id: str) -> bool:
        if notification_id in self._ids:
            return False
        self._ids[notification_id] = None
        if len(self._ids) > self.REMEMBER:
            del self._ids[next(iter(self._ids))]
        return True


def staff(principal: Principal) -> str:
    """Staff's community; a grid worker's too (they see their grid's entries only)."""
    require(principal, Role.staff, Role.grid_worker)
    assert principal.community_id is not None
    return principal.community_id


@router.get("/call-list", tags=["call list"], summary="People without smartphones to phone (staff)")
async def call_list(
    principal: CurrentPrincipal, database: Db, include_done: bool = False
) -> dict[str, Any]:
    community = staff(principal)
    done = {
        d["_id"] async for d in database["call_done"].find({"community_id": community}, {"_id": 1})
    }
    latest = await database["grid_workers"].find_one(
        {"community_id": community}, sort=[("defined_at", -1)]
    )
    grid_workers: dict[str, dict[str, str]] = latest["grids"] if latest else {}
    entries = []
    # In the order stamped (``seq``: the order the events came, where one batch shares a
    # millisecond); entries stored before stamps sort first, by time then id. The order a
    # call's ``upto`` relies on, the same here and in household_called.
    listing = database["call_list"].find({"community_id": community})
    async for doc in listing.sort([("seq", 1), ("created_at", 1), ("_id", 1)]):
        if (doc["_id"] in done and not include_done) or not principal.sees_grid(doc.get("grid_id")):
            continue
        entry = {
            **{k: v for k, v in doc.items() if k != "_id"},
            "id": doc["_id"],
            "created_at": doc["created_at"].isoformat(),
            "done": doc["_id"] in done,
        }
        if not doc.get("phone"):
            # No phone at all: the grid worker takes the message to the door.
            worker = grid_workers.get(doc.get("grid_id") or "", {})
            entry["reach"] = "grid_worker"
            entry["grid_worker"] = worker.get("name")
            entry["grid_worker_phone"] = worker.get("phone")
        else:
            entry["reach"] = "phone"
        entries.append(entry)
    return {"entries": entries, "households": by_household(entries)}


def by_household(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One call per household, not one per message: its open entries, oldest first —
    what changed since the last call — and ``upto``, the newest of them, which the call
    marks done (a message that comes in meanwhile waits for the next call)."""
    calls: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry["done"]:
            continue
        who = {k: entry.get(k) for k in ("household_id", "phone", "address", "card_code")}
        reach = {k: entry.get(k) for k in ("grid_id", "reach", "grid_worker", "grid_worker_phone")}
        call = calls.setdefault(
            entry.get("household_id") or entry["id"],
            {**who, **reach, "since": entry["created_at"], "messages": []},
        )
        call["messages"].append(
            {k: entry.get(k) for k in ("id", "kind", "message", "order_id", "created_at")}
        )
        call["upto"] = entry["id"]
    return list(calls.values())


class CalledIn(StrictBody):
    upto: str = Field(
        min_length=1, max_length=200, description="The newest entry the call told them of"
    )


@router.post(
    "/call-list/households/{household_id}/done",
    tags=["call list"],
    summary="The household was called: its entries up to the one named are done (staff)",
)
async def household_called(
    household_id: str, body: CalledIn, principal: CurrentPrincipal, database: Db
) -> dict[str, Any]:
    community = staff(principal)
    upto = await mongo.find_in_community(database["call_list"], body.upto, community)
    if (
        upto is None
        or upto.get("household_id") != household_id
        or not principal.sees_grid(upto.get("grid_id"))
    ):
        raise Problem(404, "Not found", "no such call-list entry for this household")
    unstamped = [
        {"seq": {"$exists": False}, "created_at": {"$lt": upto["created_at"]}},
        {"seq": {"$exists": False}, "created_at": upto["created_at"], "_id": {"$lte": upto["_id"]}},
    ]
    up_to = [{"seq": {"$lte": upto["seq"]}}, {"seq": {"$exists": False}}] if "seq" in upto else []
    told = database["call_list"].find(
        {
            "community_id": community,
            "household_id": household_id,
            "$or": up_to or unstamped,
        },
        {"_id": 1},
    )
    now = datetime.now(UTC)
    done = [
        {"_id": d["_id"], "community_id": community, "by": principal.subject, "at": now}
        async for d in told
    ]
    with contextlib.suppress(BulkWriteError):  # some done before: insert-once
        await database["call_done"].insert_many(done, ordered=False)
    return {"household_id": household_id, "upto": body.upto, "done": len(done)}


@router.post("/call-list/{entry_id}/done", tags=["call list"], summary="The call was made (staff)")
async def call_done(entry_id: str, principal: CurrentPrincipal, database: Db) -> dict[str, Any]:
    community = staff(principal)
    entry = await mongo.find_in_community(database["call_list"], entry_id, community)
    if entry is None or not principal.sees_grid(entry.get("grid_id")):
        raise Problem(404, "Not found", "no such call-list entry")
    with contextlib.suppress(DuplicateKeyError):
        await database["call_done"].insert_one(
            {
                "_id": entry_id,
                "community_id": community,
                "by": principal.subject,
                "at": datetime.now(UTC),
            }
        )
    return {"id": entry_id, "done": True}


@router.get(
    "/notifications/{notification_id}/delivery",
    tags=["outbound"],
    summary="Delivery state of a push notification (staff, ops)",
)
async def delivery(
    notification_id: str, principal: CurrentPrincipal, database: Db
) -> dict[str, Any]:
    require(principal, Role.staff, Role.ops)
    doc = await database["notifications"].find_one({"_id": notification_id})
    if doc is None or not principal.may_see_community(doc["community_id"]):
        raise Problem(404, "Not found", "no such notification")
    state = await database["deliveries"].find_one({"_id": notification_id}) or {"state": "pending"}
    state.pop("_id", None)
    if isinstance(state.get("at"), datetime):
        state["at"] = state["at"].isoformat()
    return {"id": notification_id, "channel": doc["channel"], **state}


@router.get("/alarms", tags=["alarms"], summary="Night alarms nobody has taken yet (staff)")
async def open_alarms(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    community = staff(principal)
    found = await request.app.state.owner.open_alarms()
    return {
        "alarms": [
            {
                "alarm_id": a["_id"],
                "order_id": a["order_id"],
                "summary": a["summary"],
                "created_at": a["created_at"].isoformat(),
                "paged": [{"name": p["to"]["name"], "at": p["at"].isoformat()} for p in a["pages"]],
            }
            for a in found
            if a["community_id"] == community and principal.sees_grid(a.get("grid_id"))
        ]
    }


@router.post("/alarms/{alarm_id}/ack", tags=["alarms"], summary="Take a night alarm (staff)")
async def acknowledge_alarm(
    alarm_id: str, request: Request, principal: CurrentPrincipal, database: Db
) -> dict[str, Any]:
    community = staff(principal)
    alarm = await mongo.find_in_community(database["alarms"], alarm_id, community)
    if alarm is None or not principal.sees_grid(alarm.get("grid_id")):
        raise Problem(404, "Not found", "no such alarm")
    taken_by = await request.app.state.owner.acknowledge(alarm_id, principal.subject)
    if taken_by is not None:
        raise Problem(409, "Taken already", f"已由 {taken_by} 处理 / taken by {taken_by} already")
    return {"alarm_id": alarm_id, "acknowledged": True}


# --- a resident's answers in the app (what "1" and "9" say by SMS) ----------------------


def resident(principal: Principal) -> tuple[str, str]:
    require(principal, Role.resident)
    assert principal.household_id is not None and principal.community_id is not None
    return principal.household_id, principal.community_id


@router.post(
    "/orders/{order_id}/arrived",
    tags=["inbox"],
    summary="The resident says the delivery arrived (as replying 1 by SMS)",
)
async def arrived(order_id: str, principal: CurrentPrincipal, database: Db) -> dict[str, Any]:
    household_id, _ = resident(principal)
    delivered = await database["notifications"].find_one(
        {"recipient": f"household:{household_id}", "kind": "task.delivered", "order_id": order_id}
    )
    if delivered is None:
        raise Problem(409, "Not delivered", "no delivery of this order to confirm yet")
    with contextlib.suppress(DuplicateKeyError):  # the same confirmation twice: once
        await database["confirmations"].insert_one(
            {"_id": order_id, "household_id": household_id, "at": datetime.now(UTC)}
        )
    return {"order_id": order_id, "confirmed": True}


@router.post(
    "/call-me",
    tags=["call list"],
    summary="The resident asks the community to call them (as replying 9 by SMS)",
)
async def call_me(request: Request, principal: CurrentPrincipal, database: Db) -> dict[str, Any]:
    household_id, community = resident(principal)
    owner = request.app.state.owner
    household = await owner.household(household_id) or {}
    today = datetime.now(UTC).strftime("%Y%m%d%H")  # once an hour at most: not a flood
    entry_id = f"callme-app-{household_id}-{today}"
    with contextlib.suppress(DuplicateKeyError):
        await database["call_list"].insert_one(
            {
                "_id": entry_id,
                "community_id": community,
                "household_id": household_id,
                "phone": household.get("phone"),
                "grid_id": household.get("grid_id"),
                "address": household.get("address"),
                "card_code": household.get("card_code"),
                "order_id": None,
                "kind": "call_me",
                "message": "请回电 · Asked to be called back (in the app).",
                "created_at": datetime.now(UTC),
                # in the list's order, after what staff may be calling about already: a
                # call marked done up to an earlier entry leaves this one
                "seq": owner.sequence.next(),
            }
        )
    return {"call_list_entry": entry_id, "asked": True}
