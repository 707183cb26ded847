"""Who a phone is, learnt from the other services' events like every service learns.

Those events are keyed by community; sign-in is keyed by phone. This consumer re-keys
each fact about a phone as a ``Learn`` command on the phone's own partition, so the owner
of a phone decides its facts and its sign-ins in one order. ``holders`` remembers which
phone holds each identity, so a number that changes hands (a grid worker replaced in the
community's definition, a cadre removed) tells the old phone it no longer is that person.
Delivered twice, a fact is the same command (its id is the event's and the identity's) and
an older fact than the one known changes nothing.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts import identity as i
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.contracts.base import Payload
from shared.events import Event
from shared.kafka import EventPublisher
from shared.topics import IDENTITY_COMMANDS

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


class Directory:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher) -> None:
        self.holders = db[HOLDERS]
        self.publisher = publisher

    async def handle(self, event: Event) -> None:
        for identity, account in facts_of(event.community_id, event.data):
            held = await self.holders.find_one({"_id": identity.identity_id})
            if held is not None and held["at"] > event.time:
                continue  # older than what is known (a re-delivered event)
            before = held["account"] if held else None
            learnt = []
            if before and before != account:
                learnt.append(self._learn(event, identity, before, present=False))
            if account:
                learnt.append(self._learn(event, identity, account, present=True))
            if learnt:
                await self.publisher.publish_many(IDENTITY_COMMANDS, learnt)
            # A derived record of this consumer alone (one instance per partition): sent
            # first, remembered after, so a crash between the two sends again (harmless).
            await self.holders.replace_one(
                {"_id": identity.identity_id},
                {"account": account, "at": event.time},
                upsert=True,
            )

    @staticmethod
    def _learn(event: Event, identity: i.Identity, account: str, *, present: bool) -> Event:
        command = i.Learn(
            command_id=f"{event.id}/{identity.identity_id}/{int(present)}",
            account=account,
            actor=event.source.strip("/") or "directory",
            identity=identity,
            present=present,
            at=event.time,
            source=event.type,
        )
        return Event(
            id=command.command_id,
            source="/identity",
            community_id=account,
            time=event.time,
            correlation_id=event.correlation_id,
            data=command,
        )
