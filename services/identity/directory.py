"""Who a phone is, learnt from the other services' events like every service learns.

Households' phones (their own and relatives'), approved and removed cadres, the grid
workers of a community's definition: each event says which phones hold an identity now
(a set; empty when none). The directory keeps that as insert-only records in ``holders``,
one per identity and phone — held, or no longer held, since the event's time — and the
newest record per identity and phone counts, so a number that changes hands (a grid
worker replaced, a relative's number given up, a cadre removed) is no longer that
person, and a re-delivered or late event changes nothing. A fetched batch is one read per
identity that may have had holders before, and one insert.

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


def _accounts(*phones: str | None) -> set[str]:
    return {a for p in phones if p and (a := i.phone_account(p))}


def facts_of(community_id: str, payload: Payload) -> list[tuple[i.Identity, set[str]]]:
    """(identity, the phone accounts holding it now) an event tells of. Pure."""
    if isinstance(payload, o.CommunityDefined):
        return [
            (
                i.Identity.of("grid_worker", community_id, g.grid_id, name=g.grid_worker),
                _accounts(g.grid_worker_phone),
            )
            for g in payload.grids
        ]
    if isinstance(payload, o.HouseholdRegistered | o.HouseholdPhonesChanged):
        who = i.Identity.of("resident", community_id, payload.household_id, name=payload.address)
        return [(who, _accounts(payload.phone, *payload.relative_phones))]
    if isinstance(payload, v.VolunteerApproved):
        who = i.Identity.of("volunteer", community_id, payload.volunteer_id, name=payload.name)
        return [(who, _accounts(payload.phone))]
    if isinstance(payload, v.VolunteerRemoved):
        return [(i.Identity.of("volunteer", community_id, payload.volunteer_id), set())]
    return []


def _record(event: Event, identity: dict[str, Any], account: str, held: bool) -> dict[str, Any]:
    identity_id = identity["identity_id"]
    return {
        "_id": f"{identity_id}|{account}|{event.id}",
        "identity_id": identity_id,
        "identity": identity,
        "account": account,
        "held": held,
        "at": event.time,
    }


def newest_by_account(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    newest: dict[str, dict[str, Any]] = {}
    for doc in records:
        known = newest.get(doc["account"])
        if known is None or doc["at"] >= known["at"]:
            newest[doc["account"]] = doc
    return newest


class Directory:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.holders = db[HOLDERS]

    async def ensure_indexes(self) -> None:
        await self.holders.create_index([("identity_id", 1)])
        await self.holders.create_index([("account", 1)])

    async def handle(self, event: Event) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: list[Event]) -> None:
        # Per identity: its current records by account, read once, then kept as applied.
        state: dict[str, dict[str, dict[str, Any]]] = {}
        records: list[dict[str, Any]] = []
        for event in events:
            for who, accounts in facts_of(event.community_id, event.data):
                identity = who.model_dump()
                current = state.get(who.identity_id)
                if current is None:
                    fresh = isinstance(event.data, o.HouseholdRegistered)  # none before it
                    found = [] if fresh else await self._records(who.identity_id)
                    current = state[who.identity_id] = newest_by_account(found)
                if any(doc["at"] > event.time for doc in current.values()):
                    continue  # older than what is known (a late or re-delivered event)
                if not identity.get("name"):  # a cadre removed: the name known so far
                    named = next((d["identity"] for d in current.values()), identity)
                    identity = {**identity, "name": named.get("name")}
                holding = {a for a, doc in current.items() if doc["held"]}
                for account in sorted(accounts | holding):
                    doc = _record(event, identity, account, account in accounts)
                    current[account] = doc
                    records.append(doc)
        if not records:
            return
        try:
            await self.holders.insert_many(records, ordered=False)
        except BulkWriteError as exc:  # a batch read again after a crash: the rest is in
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    async def _records(self, identity_id: str) -> list[dict[str, Any]]:
        return await self.holders.find({"identity_id": identity_id}).to_list()

    async def identities_of(self, account: str) -> list[i.Identity]:
        """Who this phone is now: the identities whose newest record for it says held."""
        by_identity: dict[str, list[dict[str, Any]]] = {}
        async for doc in self.holders.find({"account": account}):
            by_identity.setdefault(doc["identity_id"], []).append(doc)
        found = []
        for identity_id in sorted(by_identity):
            newest = newest_by_account(by_identity[identity_id])[account]
            if newest["held"]:
                found.append(i.Identity.model_validate(newest["identity"]))
        return found
