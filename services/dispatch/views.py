"""What dispatch's HTTP reads show: open tasks and who is on duty. From the owner's live
board when this instance owns the community (no database read on the volunteers' polling
path), else from the documents the owner derived (one per task and per volunteer)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.dispatch.board import Board, photo_proves
from services.dispatch.handlers import CADRES, TASKS
from shared.owner import LIVE


def task_view(task: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    order = task["order"]
    view = {
        "order_id": order["order_id"],
        "state": task["state"],
        "volunteer_id": task.get("volunteer_id"),
        "offer_expires_at": task.get("offer_expires_at"),
        "attempt": task.get("attempt", 0),
        "escalated": task.get("escalated", False),
        "late": task.get("late", False),
        "category": order["category"],
        "items": order["items"],
        "priority": order["priority"],
        "grid_id": order["grid_id"],
        "address": order["address"],
        # A parcel taken from the gate: the cadre's batch is the building's parcels.
        "building": order.get("building"),
        "from_gate": order.get("awaits_gate", False),
        "placed_at": order["placed_at"],
        # where a photo is proof enough (garbage set out; no smartphone to show a code)
        "photo_proof": photo_proves(order["category"], order.get("household_flags", [])),
    }
    if view["volunteer_id"] in names:
        view["volunteer_name"] = names[view["volunteer_id"]]
    return view


def on_duty_view(volunteers: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> list[Any]:
    loads: dict[str, int] = {}
    for task in tasks:
        if task["volunteer_id"]:
            loads[task["volunteer_id"]] = loads.get(task["volunteer_id"], 0) + 1
    return [
        {
            "volunteer_id": v["volunteer_id"],
            "name": v["name"],
            "grid_id": v["shift_grid_id"],
            "load": loads.get(v["volunteer_id"], 0),
            "capacity": v["capacity"],
        }
        for v in volunteers
        if v.get("shift_grid_id")
    ]


async def open_tasks(
    board: Board | None,
    database: AsyncDatabase[dict[str, Any]],
    community: str,
    volunteer_id: str | None,
) -> dict[str, Any]:
    """A volunteer's own offers and tasks (``volunteer_id``), or the whole board with who
    is on duty; most urgent first."""
    if board is not None:
        held = board.held_by(volunteer_id) if volunteer_id else board.tasks.values()
        tasks = [t.model_dump(mode="json") for t in held]
        volunteers = [v.model_dump(mode="json") for v in board.volunteers.values()]
    else:
        found = {"community_id": community, **LIVE}
        if volunteer_id:
            found["task.volunteer_id"] = volunteer_id
        tasks = [d["task"] async for d in database[TASKS].find(found)]
        volunteers = [
            d["volunteer"] async for d in database[CADRES].find({"community_id": community})
        ]
    names = {v["volunteer_id"]: v["name"] for v in volunteers}
    views = sorted(
        (task_view(t, names) for t in tasks), key=lambda t: (-t["priority"], t["placed_at"])
    )
    if volunteer_id:
        return {"tasks": views}
    return {"tasks": views, "on_duty": on_duty_view(volunteers, views)}
