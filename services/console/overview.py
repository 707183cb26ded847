"""The community at a glance: per grid, how many orders are where, who is on duty, and how
long the oldest waiting order has waited. Pure: what the services answered in, the
figures out (the console decides nothing; it counts what the owners decided)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.console.session import Person

OPEN = ("held", "received", "accepted", "assigned", "picked_up", "failed")


@dataclass
class Cadre:
    volunteer_id: str
    name: str
    load: int
    capacity: int
    since: datetime | None


@dataclass
class GridView:
    grid_id: str
    name: str
    grid_worker: str
    neighbours: list[str]
    open: int = 0
    held: int = 0
    waiting: int = 0
    offered: int = 0
    assigned: int = 0
    late: int = 0
    escalated: int = 0
    failed: int = 0
    oldest_waiting: datetime | None = None
    on_duty: list[Cadre] = field(default_factory=list)

    def oldest_waiting_minutes(self, now: datetime) -> int | None:
        if self.oldest_waiting is None:
            return None
        return int((now - self.oldest_waiting).total_seconds() // 60)


def moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def overview(
    person: Person,
    community: dict[str, Any],
    orders: Iterable[dict[str, Any]],
    tasks: Iterable[dict[str, Any]],
    on_duty: Iterable[dict[str, Any]],
    shifts: dict[str, datetime],
) -> list[GridView]:
    """``orders``: the open orders; ``tasks`` and ``on_duty``: dispatch's board;
    ``shifts``: since when each volunteer on duty has been (volunteers' documents)."""
    grids = {
        g["grid_id"]: GridView(g["grid_id"], g["name"], g["grid_worker"], g.get("neighbours", []))
        for g in community["grids"]
        if person.sees_grid(g["grid_id"])
    }
    for order in orders:
        grid = grids.get(order["grid_id"])
        if grid is None or order["status"] not in OPEN:
            continue
        grid.open += 1
        grid.held += order["status"] == "held"
        grid.failed += order["status"] == "failed"
    for task in tasks:
        grid = grids.get(task["grid_id"])
        if grid is None:
            continue
        state = task["state"]
        grid.waiting += state == "waiting"
        grid.offered += state == "offered"
        grid.assigned += state in ("assigned", "picked_up")
        grid.late += bool(task.get("late"))
        grid.escalated += bool(task.get("escalated"))
        placed = moment(task["placed_at"])
        if (
            state == "waiting"
            and placed
            and (grid.oldest_waiting is None or placed < grid.oldest_waiting)
        ):
            grid.oldest_waiting = placed
    for cadre in on_duty:
        grid = grids.get(cadre["grid_id"])
        if grid is not None:
            grid.on_duty.append(
                Cadre(
                    cadre["volunteer_id"],
                    cadre["name"],
                    cadre["load"],
                    cadre["capacity"],
                    shifts.get(cadre["volunteer_id"]),
                )
            )
    for grid in grids.values():
        grid.on_duty.sort(key=lambda c: (c.since is None, c.since or datetime.min, c.name))
    return list(grids.values())
