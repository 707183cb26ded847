"""HTTP API of the dispatch service (under /v1): a volunteer's offers and tasks, and the
answers that go to the community's owner as commands."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator

from services.dispatch import photos
from services.dispatch.views import open_tasks
from shared.api import Commands, Db, StrictBody, answer
from shared.auth import CurrentPrincipal, Office, Principal, Role, Volunteer, require
from shared.commands import CommandSender, new_command_id
from shared.contracts import dispatch as d
from shared.contracts.base import Payload
from shared.http import Problem

router = APIRouter(prefix="/v1", tags=["tasks"])


@router.get(
    "/tasks", summary="Open tasks: a volunteer's own offers and tasks, or staff's whole board"
)
async def list_tasks(
    request: Request,
    principal: CurrentPrincipal,
    database: Db,
    community_id: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    require(principal, Role.volunteer, Role.staff, Role.grid_worker, Role.ops)
    community = principal.community_id if principal.role is not Role.ops else community_id
    if community is None:
        raise Problem(422, "Invalid request", "community_id is required", kind="validation")
    board = await request.app.state.owner.settled(community)
    mine = principal.volunteer_id if principal.role is Role.volunteer else None
    found = await open_tasks(board, database, community, mine)
    if principal.role is Role.grid_worker:  # their grid's tasks, and who is on duty there
        found = {k: [x for x in v if principal.sees_grid(x["grid_id"])] for k, v in found.items()}
    return found


def volunteer(principal: Principal) -> tuple[str, str]:
    require(principal, Role.volunteer)
    assert principal.volunteer_id is not None and principal.community_id is not None
    return principal.volunteer_id, principal.community_id


async def send(commands: CommandSender, community_id: str, command: Payload) -> JSONResponse:
    return answer(await commands.send(community_id, command))


async def answer_offer(
    kind: type[d.AcceptOffer | d.DeclineOffer | d.PickUp],
    order_id: str,
    principal: Principal,
    commands: CommandSender,
) -> JSONResponse:
    vid, community = volunteer(principal)
    return await send(
        commands, community, kind(command_id=new_command_id(), order_id=order_id, volunteer_id=vid)
    )


@router.post("/tasks/{order_id}/accept", summary="Accept an offer")
async def accept(order_id: str, principal: CurrentPrincipal, commands: Commands) -> JSONResponse:
    return await answer_offer(d.AcceptOffer, order_id, principal, commands)


@router.post("/tasks/{order_id}/decline", summary="Decline an offer")
async def decline(order_id: str, principal: CurrentPrincipal, commands: Commands) -> JSONResponse:
    return await answer_offer(d.DeclineOffer, order_id, principal, commands)


@router.post("/tasks/{order_id}/pick-up", summary="Picked up the goods")
async def pick_up(order_id: str, principal: CurrentPrincipal, commands: Commands) -> JSONResponse:
    return await answer_offer(d.PickUp, order_id, principal, commands)


class TakeIn(StrictBody):
    order_ids: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=50, description="A building's parcels, offered or accepted"
    )
    pick_up: bool = Field(default=False, description="Picked up too: the batch leaves the gate")


@router.post(
    "/tasks/take",
    summary="Take a batch as one: a building's parcels accepted (and picked up) at once",
)
async def take(body: TakeIn, principal: CurrentPrincipal, commands: Commands) -> JSONResponse:
    vid, community = volunteer(principal)
    command = d.TakeBatch(command_id=new_command_id(), volunteer_id=vid, **body.model_dump())
    return await send(commands, community, command)


@router.post("/tasks/{order_id}/offer-again", summary="Send a waiting order round again (staff)")
async def offer_again(order_id: str, principal: Office, commands: Commands) -> JSONResponse:
    command = d.OfferAgain(
        command_id=new_command_id(),
        actor=principal.subject,
        order_id=order_id,
        grid_id=principal.grid_id,
    )
    return await send(commands, staff_community(principal), command)


class OfferToIn(StrictBody):
    volunteer_id: str = Field(min_length=1, max_length=100)


@router.post(
    "/tasks/{order_id}/offer-to", summary="Offer a waiting order to a chosen cadre (staff)"
)
async def offer_to(
    order_id: str, body: OfferToIn, principal: Office, commands: Commands
) -> JSONResponse:
    command = d.OfferTo(
        command_id=new_command_id(),
        actor=principal.subject,
        order_id=order_id,
        volunteer_id=body.volunteer_id,
        grid_id=principal.grid_id,
    )
    return await send(commands, staff_community(principal), command)


def staff_community(principal: Principal) -> str:
    assert principal.community_id is not None  # a staff token always names its community
    return principal.community_id


class DeliveryIn(StrictBody):
    handoff_code: str | None = Field(default=None, pattern=r"^[0-9]{4}$", examples=["4821"])
    photo_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$")
    photo_id: str | None = Field(
        default=None, pattern=photos.PHOTO_ID, description="A photo uploaded with PUT /v1/photos"
    )

    @model_validator(mode="after")
    def one_proof(self) -> DeliveryIn:
        if sum(p is not None for p in (self.handoff_code, self.photo_url, self.photo_id)) != 1:
            raise ValueError("give exactly one proof: handoff_code, photo_id or photo_url")
        return self


@router.post("/tasks/{order_id}/deliver", summary="Delivered to the door, with proof")
async def deliver(
    order_id: str, body: DeliveryIn, principal: Volunteer, commands: Commands, database: Db
) -> JSONResponse:
    vid, community = volunteer(principal)
    photo_url = body.photo_url
    if body.photo_id is not None:  # uploaded first, by this cadre, for this order
        photo = await photos.stored_photo(database, body.photo_id, principal)
        if photo["order_id"] != order_id:
            raise Problem(409, "Conflict", "that photo was taken for another order")
        photo_url = photos.photo_path(body.photo_id)
    command = d.Deliver(
        command_id=new_command_id(),
        order_id=order_id,
        volunteer_id=vid,
        handoff_code=body.handoff_code,
        photo_url=photo_url,
    )
    return await send(commands, community, command)


class FailureIn(StrictBody):
    reason: d.FailureReason
    note: str | None = Field(default=None, max_length=300)


@router.post("/tasks/{order_id}/fail", summary="Could not deliver; staff decide to retry or close")
async def fail(
    order_id: str, body: FailureIn, principal: Volunteer, commands: Commands
) -> JSONResponse:
    vid, community = volunteer(principal)
    command = d.ReportFailure(
        command_id=new_command_id(),
        order_id=order_id,
        volunteer_id=vid,
        reason=body.reason,
        note=body.note,
    )
    return await send(commands, community, command)


class ReleaseIn(StrictBody):
    reason: str = Field(min_length=2, max_length=300, examples=["the cadre went home ill"])
    volunteer_id: str | None = Field(
        default=None, min_length=1, max_length=100, description="Offer it to; omit: the queue"
    )


@router.post(
    "/tasks/{order_id}/release",
    summary="Take a task from the cadre holding it: to another cadre, or the queue (staff)",
)
async def release(
    order_id: str, body: ReleaseIn, principal: Office, commands: Commands
) -> JSONResponse:
    command = d.ReleaseTask(
        command_id=new_command_id(),
        actor=principal.subject,
        order_id=order_id,
        reason=body.reason,
        volunteer_id=body.volunteer_id,
        grid_id=principal.grid_id,
    )
    return await send(commands, staff_community(principal), command)


class UnlockIn(StrictBody):
    reason: str = Field(min_length=2, max_length=300, examples=["checked the code by phone"])


@router.post("/tasks/{order_id}/unlock", summary="Lift the lock of five wrong codes (staff)")
async def unlock(
    order_id: str, body: UnlockIn, principal: Office, commands: Commands
) -> JSONResponse:
    command = d.UnlockTask(
        command_id=new_command_id(),
        actor=principal.subject,
        order_id=order_id,
        reason=body.reason,
        grid_id=principal.grid_id,
    )
    return await send(commands, staff_community(principal), command)
