"""HTTP API of the dispatch service (under /v1): a volunteer's offers and tasks, and the
answers that go to the community's owner as commands."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator
from pymongo.asynchronous.database import AsyncDatabase

from shared.api import Commands, Db, StrictBody, answer
from shared.auth import CurrentPrincipal, Principal, Role, Volunteer, require
from shared.commands import CommandSender, new_command_id
from shared.contracts import dispatch as d
from shared.contracts.base import Payload
from shared.http import Problem

router = APIRouter(prefix="/v1", tags=["tasks"])


def task_view(task: dict[str, Any], volunteers: dict[str, Any]) -> dict[str, Any]:
    order = task["order"]
    view = {
        "order_id": order["order_id"],
        "state": task["state"],
        "volunteer_id": task.get("volunteer_id"),
        "offer_expires_at": task.get("offer_expires_at"),
        "attempt": task.get("attempt", 0),
        "escalated": task.get("escalated", False),
        "category": order["category"],
        "items": order["items"],
        "priority": order["priority"],
        "grid_id": order["grid_id"],
        "address": order["address"],
        "placed_at": order["placed_at"],
    }
    if view["volunteer_id"] in volunteers:
        view["volunteer_name"] = volunteers[view["volunteer_id"]]["name"]
    return view


async def board_of(
    request: Request, database: AsyncDatabase[dict[str, Any]], community: str
) -> dict[str, Any]:
    """The owner's live board when this instance owns the community (no database read on
    the volunteers' polling path); otherwise the last stored board."""
    owned = request.app.state.owner.state(community)
    if owned is not None:
        return owned.model_dump(mode="json", include={"tasks", "volunteers"})  # type: ignore[no-any-return]
    doc = await database["boards"].find_one({"_id": community}, {"board": 1})
    return (doc or {}).get("board", {"tasks": {}, "volunteers": {}})  # type: ignore[no-any-return]


@router.get(
    "/tasks", summary="Open tasks: a volunteer's own offers and tasks, or staff's whole board"
)
async def list_tasks(
    request: Request,
    principal: CurrentPrincipal,
    database: Db,
    community_id: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    require(principal, Role.volunteer, Role.staff, Role.ops)
    community = principal.community_id if principal.role is not Role.ops else community_id
    if community is None:
        raise Problem(422, "Invalid request", "community_id is required", kind="validation")
    board = await board_of(request, database, community)
    tasks = [task_view(t, board["volunteers"]) for t in board["tasks"].values()]
    if principal.role is Role.volunteer:
        tasks = [t for t in tasks if t["volunteer_id"] == principal.volunteer_id]
    tasks.sort(key=lambda t: (-t["priority"], t["placed_at"]))
    on_duty = [
        {
            "volunteer_id": vid,
            "name": vol["name"],
            "grid_id": vol["shift_grid_id"],
            "load": sum(1 for t in tasks if t["volunteer_id"] == vid),
            "capacity": vol["capacity"],
        }
        for vid, vol in board["volunteers"].items()
        if vol.get("shift_grid_id")
    ]
    result: dict[str, Any] = {"tasks": tasks}
    if principal.role is not Role.volunteer:
        result["on_duty"] = on_duty
    return result


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


class DeliveryIn(StrictBody):
    handoff_code: str | None = Field(default=None, pattern=r"^[0-9]{4}$", examples=["4821"])
    photo_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$")

    @model_validator(mode="after")
    def one_proof(self) -> DeliveryIn:
        if (self.handoff_code is None) == (self.photo_url is None):
            raise ValueError("give exactly one proof: handoff_code or photo_url")
        return self


@router.post("/tasks/{order_id}/deliver", summary="Delivered to the door, with proof")
async def deliver(
    order_id: str, body: DeliveryIn, principal: Volunteer, commands: Commands
) -> JSONResponse:
    vid, community = volunteer(principal)
    command = d.Deliver(
        command_id=new_command_id(),
        order_id=order_id,
        volunteer_id=vid,
        handoff_code=body.handoff_code,
        photo_url=body.photo_url,
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
