"""Delivery photos: where the rules take a photo as proof (garbage set out, a household
without a smartphone), the cadre's phone uploads it here first, under an id the phone
made, then delivers with that id. A photo is not a decision — nothing later depends on its
bytes — so it is stored directly, once per id, not through the community's owner; the
delivery that cites it is a decision, and goes through the owner as every other."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from bson import Binary
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.dispatch.board import Board, Task, TaskState, photo_proves
from services.dispatch.handlers import TASKS
from shared.api import Db
from shared.auth import CurrentPrincipal, Principal, Role, Volunteer, require
from shared.http import Problem
from shared.owner import LIVE

PHOTOS = "photos"
MAX_PHOTO_BYTES = 600_000  # the app sends ≤ 1280 px JPEG, ~100–300 kB
PHOTO_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
KINDS = {  # what the bytes begin with: a photo, whatever the request calls it
    b"\xff\xd8\xff": "image/jpeg",
    b"\x89PNG\r\n\x1a\n": "image/png",
}
PhotoId = Annotated[str, Path(pattern=PHOTO_ID, description="A UUID the phone made")]

router = APIRouter(prefix="/v1", tags=["photos"])


def photo_path(photo_id: str) -> str:
    """What a delivery records as its ``photo_url``: the photo, behind the API."""
    return f"/dispatch/v1/photos/{photo_id}"


def kind_of(data: bytes) -> str:
    if data[8:12] == b"WEBP" and data[:4] == b"RIFF":
        return "image/webp"
    for magic, kind in KINDS.items():
        if data.startswith(magic):
            return kind
    raise Problem(415, "Unsupported media type", "a photo is a JPEG, PNG or WebP image")


async def task_of(request: Request, database: Db, community: str, order_id: str) -> Task | None:
    """The task as the owner has it (live if ours, else as last stored)."""
    board: Board | None = await request.app.state.owner.settled(community)
    if board is not None:
        return board.tasks.get(order_id)
    doc = await database[TASKS].find_one({"_id": f"{community}:{order_id}", **LIVE})
    return Task.model_validate(doc["task"]) if doc else None


def may_prove(task: Task | None, order_id: str, volunteer_id: str) -> None:
    if task is None or task.volunteer_id != volunteer_id:
        raise Problem(404, "Not found", f"you hold no task {order_id!r}")
    if task.state not in (TaskState.assigned, TaskState.picked_up):
        raise Problem(409, "Conflict", f"the task is {task.state.value}: nothing to prove")
    if not photo_proves(task.order.category, task.order.household_flags):
        raise Problem(
            422,
            "Invalid request",
            "a photo is proof only for garbage pickup and for households without a "
            "smartphone: deliver with the household's handoff code",
            kind="validation",
        )


@router.put(
    "/photos/{photo_id}",
    summary="Upload a delivery photo (the cadre holding the task; the same id again is a no-op)",
    status_code=201,
)
async def upload(
    photo_id: PhotoId,
    request: Request,
    principal: Volunteer,
    database: Db,
    order_id: Annotated[str, Query(min_length=1, max_length=100)],
) -> dict[str, Any]:
    vid, community = principal.volunteer_id, principal.community_id
    assert vid is not None and community is not None
    data = await request.body()
    if not data:
        raise Problem(422, "Invalid request", "the body is the photo", kind="validation")
    kind = kind_of(data)
    may_prove(await task_of(request, database, community, order_id), order_id, vid)
    photo = {
        "_id": photo_id,
        "community_id": community,
        "order_id": order_id,
        "volunteer_id": vid,
        "content_type": kind,
        "bytes": Binary(data),
        "at": datetime.now(UTC),
    }
    try:
        await database[PHOTOS].insert_one(photo)
    except DuplicateKeyError:
        kept = await database[PHOTOS].find_one({"_id": photo_id}, {"bytes": 0})
        # a retry after a lost answer; the same id for another photo is refused
        if kept is None or (kept["volunteer_id"], kept["order_id"]) != (vid, order_id):
            raise Problem(409, "Conflict", "this photo id is taken") from None
    return {"photo_id": photo_id, "photo_url": photo_path(photo_id)}


async def stored_photo(
    database: AsyncDatabase[dict[str, Any]], photo_id: str, principal: Principal
) -> dict[str, Any]:
    """The photo if this person may see it: staff and grid workers of its community, ops,
    and the cadre who took it."""
    photo = await database[PHOTOS].find_one({"_id": photo_id})
    visible = photo is not None and (
        principal.role is Role.ops
        or (
            principal.community_id == photo["community_id"]
            and (
                principal.role in (Role.staff, Role.grid_worker)
                or principal.volunteer_id == photo["volunteer_id"]
            )
        )
    )
    if photo is None or not visible:
        raise Problem(404, "Not found", f"no photo {photo_id!r}")
    return photo


@router.get("/photos/{photo_id}", summary="A delivery photo (staff, ops, the cadre who took it)")
async def photo(photo_id: PhotoId, principal: CurrentPrincipal, database: Db) -> Response:
    require(principal, Role.staff, Role.grid_worker, Role.ops, Role.volunteer)
    found = await stored_photo(database, photo_id, principal)
    return Response(
        bytes(found["bytes"]),
        media_type=found["content_type"],
        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
