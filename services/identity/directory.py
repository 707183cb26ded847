"""Who a phone is, learnt from the other services' events like every service learns.

Households' phones, approved (and removed) cadres, grid workers in a community's
definition: each fact is one insert-only record in ``holders`` — this identity is held
by this phone (or by none) since the event's time. The newest record per identity counts,
so a number that changes hands (a grid worker replaced, a cadre removed) is no longer that
person, and a re-delivered or late event changes nothing. A fetched batch is one insert.

Sign-in reads a phone's identities here (``identities_of``) and hands them to the phone's
owner with the command: the owner decides codes and sessions, this read model says who
a phone is. (Sending each fact to the phone's owner instead cost a load and an entry per
phone: a 1,500-household import held sign-in back for over a minute.)
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from shared.contracts import identity as i
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.contracts.base import Payload
from shared.events import Event
from shared.mongo import DUPLICATE_KEY

HOLDERS = "holders"


def facts_of(community_id: str, payload: Payload) -> list[tuple[i.Identity, str | None]]:
    """(identity, the phone account now holding it, or None) an event tells of. Pure."""
    if isinstance(payload, o.CommunityDefined):
        return [
            (
                i.Identity.of("grid_worker", community_id, g.grid_id, name=g.grid_worker),
                i.phone_account(g.grid_worker_phone),
            )
            for g in payload.grids
        ]
    if isinstance(payload, o.HouseholdRegistered):
        who = i.Identity.of("resident", community_id, payload.household_id, name=payload.address)
        return [(who, i.phone_account(payload.phone) if payload.phone else None)]
    if isinstance(payload, v.VolunteerApproved):
        who = i.Identity.of("volunteer", community_id, payload.volunteer_id, name=payload.name)
        return [(who, i.phone_account(payload.phone))]
    if isinstance(payload, v.VolunteerRemoved):
        return [(i.Identity.of("volunteer", community_id, payload.volunteer_id), None)]
    return []


def records_of(events: list[Event]) -> list[dict[str, Any]]:
    """The holder records a batch of events gives (ids stable: a redo inserts nothing)."""
    return [
        {
            "_id": f"{identity.identity_id}|{event.id}",
            "identity_id": identity.identity_id,
            "identity": identity.model_dump(),
            "account": account,
            "at": event.time,
        }
        for event in events
        for identity, account in facts_of(event.community_id, event.data)
    ]


class Directory:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.holders = db[HOLDERS]

    async def ensure_indexes(self) -> None:
        await self.holders.create_index([("identity_id", 1)])
        await self.holders.create_index([("account", 1)])

    async def handle(self, event: Event) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: list[Event]) -> None:
        records = records_of(events)
        if not records:
            return
        try:
            await self.holders.insert_many(records, ordered=False)
        except BulkWriteError as exc:  # a batch read again after a crash: the rest is in
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    async def identities_of(self, account: str) -> list[i.Identity]:
        """Who this phone is now: the identities whose newest record names it."""
        named = {d["identity_id"] async for d in self.holders.find({"account": account})}
        found = []
        for identity_id in sorted(named):
            newest = await self.holders.find_one({"identity_id": identity_id}, sort=[("at", -1)])
            if newest is not None and newest["account"] == account:
                found.append(i.Identity.model_validate(newest["identity"]))
        return found
