"""HTTP API of door-knock campaigns (under /v1, in the orders service that owns them):
staff start and close them and see coverage and exceptions; cadres on duty take walk
lists and record doors. Writes are commands to the community's owner; reads come from its
live documents where this instance owns the community, else from the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, Field, StrictInt
from pymongo.asynchronous.database import AsyncDatabase

from services.orders import campaigns
from services.orders.book import CAMPAIGNS, HOUSEHOLDS, ORDERS, VISITS
from shared.api import Commands, Db, StrictBody, answer
from shared.auth import Principal, Staff, VolunteerOrStaff
from shared.commands import new_command_id
from shared.contracts import campaigns as c
from shared.http import Problem

router = APIRouter(prefix="/v1", tags=["campaigns"])
ID = r"^[A-Za-z0-9_-]{1,64}$"
MAX_DOORS = 100  # per request: a phone syncing what it recorded offline
RECORD_ID = r"^[A-Za-z0-9_-]{8,64}$"  # a UUID, or any id a phone makes that is unlikely to repeat


class CampaignIn(StrictBody):
    title: str = Field(min_length=1, max_length=200, examples=["Daily health check, 28 May"])
    grid_ids: list[str] = Field(
        default_factory=list, max_length=200, description="Empty: the whole community"
    )
    revisit_after_seconds: StrictInt = Field(
        default=2 * 3600, ge=0, le=7 * 24 * 3600, description="When a no-answer door is due again"
    )


class TakeIn(StrictBody):
    volunteer_id: str | None = Field(
        default=None, pattern=ID, description="Staff: the cadre to give it to; a cadre: omit"
    )


class DoorIn(StrictBody):
    household_id: str = Field(pattern=ID)
    outcome: c.Outcome
    needs: list[c.Need] = Field(default_factory=list, max_length=4)
    note: str | None = Field(default=None, max_length=500)
    visited_at: AwareDatetime | None = Field(
        default=None, description="When the door was knocked (the phone's clock, with offset)"
    )
    record_id: str | None = Field(
        default=None,
        pattern=RECORD_ID,
        description="Made on the phone: a record sent again is recorded once",
    )
    items: dict[c.Need, Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=dict, description="What each need is, e.g. {'medicine': 'insulin'}"
    )


class VisitsIn(StrictBody):
    doors: list[DoorIn] = Field(min_length=1, max_length=MAX_DOORS)


class CloseIn(StrictBody):
    reason: str | None = Field(default=None, min_length=2, max_length=500)


def community_of(principal: Principal) -> str:
    assert principal.community_id is not None  # staff and volunteer tokens name it
    return principal.community_id


@router.post("/campaigns", status_code=201, summary="Start a door-knock campaign (staff)")
async def start(body: CampaignIn, principal: Staff, commands: Commands) -> JSONResponse:
    command_id = new_command_id()
    command = c.StartCampaign(
        command_id=command_id,
        actor=principal.subject,
        campaign_id=campaigns.campaign_id_for(command_id),
        title=body.title,
        grid_ids=body.grid_ids,
        revisit_after_seconds=body.revisit_after_seconds,
    )
    return answer(await commands.send(community_of(principal), command))


@dataclass
class Snapshot:
    campaign: dict[str, Any]
    visits: dict[str, dict[str, Any]]
    households: dict[str, dict[str, Any]]
    orders: dict[str, dict[str, Any]]
    every_visit: list[dict[str, Any]]  # of every round (last contact), with_orders only


async def snapshot(
    request: Request,
    database: AsyncDatabase[dict[str, Any]],
    principal: Principal,
    campaign_id: str,
    *,
    with_orders: bool = False,
) -> Snapshot:
    community = community_of(principal)
    book = await request.app.state.owner.settled(community)
    if book is not None:
        campaign = book.get(CAMPAIGNS, campaign_id)
        if campaign is None:
            raise Problem(404, "Not found", "no such campaign")
        return Snapshot(
            campaign,
            campaigns.visits_of(book, campaign),
            {h["_id"]: h for h in book.values(HOUSEHOLDS)},
            {o["_id"]: o for o in book.values(ORDERS)} if with_orders else {},
            list(book.values(VISITS)) if with_orders else [],
        )
    campaign = await database[CAMPAIGNS].find_one({"_id": campaign_id, "community_id": community})
    if campaign is None:
        raise Problem(404, "Not found", "no such campaign")
    visits = await database[VISITS].find({"campaign_id": campaign_id}).to_list()
    households = await database[HOUSEHOLDS].find({"community_id": community}).to_list()
    orders = (
        await database[ORDERS].find({"community_id": community}).to_list() if with_orders else []
    )
    every = (
        await database[VISITS].find({"community_id": community}).to_list() if with_orders else []
    )
    return Snapshot(
        campaign,
        {v["household_id"]: v for v in visits},
        {h["_id"]: h for h in households},
        {o["_id"]: o for o in orders},
        every,
    )


@router.get("/campaigns", summary="The community's campaigns (staff); the open ones (a cadre)")
async def list_campaigns(
    request: Request, principal: VolunteerOrStaff, database: Db
) -> dict[str, Any]:
    community = community_of(principal)
    book = await request.app.state.owner.settled(community)
    if book is not None:
        docs = list(book.values(CAMPAIGNS))
    else:
        docs = await database[CAMPAIGNS].find({"community_id": community}).to_list()
    if principal.volunteer_id is not None:  # a cadre walks open rounds only
        docs = [d for d in docs if d["status"] == "open"]
    docs.sort(key=lambda d: d["started_at"], reverse=True)
    return {"campaigns": [campaigns.campaign_view(d) for d in docs]}


@router.get("/campaigns/{campaign_id}", summary="A campaign and its coverage (staff)")
async def get_campaign(
    campaign_id: str, request: Request, principal: Staff, database: Db
) -> dict[str, Any]:
    seen = await snapshot(request, database, principal, campaign_id)
    now = datetime.now(UTC)
    return {
        **campaigns.campaign_view(seen.campaign),
        "coverage": campaigns.coverage(seen.campaign, seen.visits, now),
    }


@router.get(
    "/campaigns/{campaign_id}/walk-lists",
    summary="Walk lists in walking order (staff: all; a cadre: theirs and the free ones)",
)
async def walk_lists(
    campaign_id: str,
    request: Request,
    principal: VolunteerOrStaff,
    database: Db,
    grid_id: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    seen = await snapshot(request, database, principal, campaign_id)
    now = datetime.now(UTC)
    revisit = timedelta(seconds=seen.campaign["revisit_after_seconds"])
    mine = principal.volunteer_id
    return {
        "walk_lists": [
            campaigns.walk_list_view(walk, seen.visits, seen.households, revisit, now)
            for walk in seen.campaign["lists"].values()
            if (grid_id is None or walk["grid_id"] == grid_id)
            and (mine is None or walk["volunteer_id"] in (None, mine))
        ]
    }


@router.post(
    "/campaigns/{campaign_id}/walk-lists/{list_id}/take",
    summary="Take a walk list: a cadre on duty claims it, or staff give it to one",
)
async def take(
    campaign_id: str,
    list_id: str,
    principal: VolunteerOrStaff,
    commands: Commands,
    body: TakeIn | None = None,
) -> JSONResponse:
    volunteer_id = principal.volunteer_id or (body.volunteer_id if body else None)
    if volunteer_id is None:
        raise Problem(422, "Invalid request", "volunteer_id: the cadre to give it to")
    command = c.TakeWalkList(
        command_id=new_command_id(),
        actor=principal.subject,
        campaign_id=campaign_id,
        list_id=list_id,
        volunteer_id=volunteer_id,
        role=principal.role.value,
    )
    return answer(await commands.send(community_of(principal), command))


@router.post("/campaigns/{campaign_id}/visits", summary="Record doors visited (in walking order)")
async def record(
    campaign_id: str, body: VisitsIn, principal: VolunteerOrStaff, commands: Commands
) -> JSONResponse:
    command = c.RecordVisits(
        command_id=new_command_id(),
        actor=principal.subject,
        campaign_id=campaign_id,
        volunteer_id=principal.volunteer_id,
        doors=[c.Door(**door.model_dump()) for door in body.doors],
    )
    return answer(await commands.send(community_of(principal), command))


@router.get("/campaigns/{campaign_id}/revisits", summary="No-answer doors due again, oldest first")
async def revisit_list(
    campaign_id: str, request: Request, principal: VolunteerOrStaff, database: Db
) -> dict[str, Any]:
    seen = await snapshot(request, database, principal, campaign_id)
    return {"revisits": campaigns.revisits(seen.campaign, seen.visits, datetime.now(UTC))}


@router.get(
    "/campaigns/{campaign_id}/exceptions",
    summary="For the grid worker: never reached, needs not served, elderly alone without contact",
)
async def exception_list(
    campaign_id: str,
    request: Request,
    principal: Staff,
    database: Db,
    no_contact_days: Annotated[int, Query(ge=0, le=365)] = 3,
    grid_id: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    seen = await snapshot(request, database, principal, campaign_id, with_orders=True)
    # Contact in any round counts: with a round a day, yesterday's answer is contact.
    contacts = campaigns.last_contacts(seen.every_visit, seen.orders.values())
    found = campaigns.exceptions(
        seen.campaign,
        seen.visits,
        seen.households.values(),
        seen.orders,
        contacts,
        datetime.now(UTC),
        no_contact_days,
    )
    if grid_id:
        found = {k: [e for e in v if e["grid_id"] == grid_id] for k, v in found.items()}
    return found


@router.post(
    "/campaigns/{campaign_id}/households/{household_id}/hand-over",
    summary="Hand a door that never answers to its grid worker by name (staff)",
)
async def hand_over(
    campaign_id: str, household_id: str, principal: Staff, commands: Commands
) -> JSONResponse:
    command = c.HandToGridWorker(
        command_id=new_command_id(),
        actor=principal.subject,
        campaign_id=campaign_id,
        household_id=household_id,
    )
    return answer(await commands.send(community_of(principal), command))


@router.post(
    "/campaigns/{campaign_id}/close",
    summary="Close a campaign (with a reason while any household is not reached; staff)",
)
async def close(
    campaign_id: str, principal: Staff, commands: Commands, body: CloseIn | None = None
) -> JSONResponse:
    command = c.CloseCampaign(
        command_id=new_command_id(),
        actor=principal.subject,
        campaign_id=campaign_id,
        reason=body.reason if body else None,
    )
    return answer(await commands.send(community_of(principal), command))
