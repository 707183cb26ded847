"""Who gets offered what, and in which order. Pure: no I/O, no clock.

- Orders: most urgent first (priority), then the longest waiting.
- Candidates for an order: on duty in its community, free capacity, the needed skill, not
  already tried for this order. Preferred: the order's grid, then its neighbours, then the
  rest of the community; among equals the least loaded, then the one idle longest — so the
  work is spread fairly and nobody is sent across the whole community while a neighbour
  is free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from shared.contracts.orders import Category
from shared.contracts.volunteers import Skill

REQUIRED_SKILL: dict[Category, Skill | None] = {
    Category.groceries: Skill.delivery,
    Category.medicine: Skill.delivery,
    Category.garbage: Skill.delivery,
    Category.home_test: Skill.medical,
    Category.transfer: Skill.driving,
    Category.app_help: Skill.app_help,
    Category.visit: None,
    Category.other: None,
}

SAME_GRID, NEIGHBOUR_GRID, OTHER_GRID = 0, 1, 2


@dataclass(frozen=True)
class Candidate:
    volunteer_id: str
    grid_id: str  # where the shift is
    skills: frozenset[Skill]
    capacity: int
    load: int  # tasks held, live offers included
    idle_since: datetime


@dataclass(frozen=True)
class Need:
    order_id: str
    grid_id: str
    category: Category
    priority: int
    placed_at: datetime
    tried: frozenset[str]  # volunteers who declined or let an offer lapse


def grid_rank(order_grid: str, volunteer_grid: str, neighbours: Mapping[str, Iterable[str]]) -> int:
    if volunteer_grid == order_grid:
        return SAME_GRID
    if volunteer_grid in set(neighbours.get(order_grid, ())):
        return NEIGHBOUR_GRID
    return OTHER_GRID


def eligible(need: Need, candidate: Candidate) -> bool:
    skill = REQUIRED_SKILL[need.category]
    return (
        candidate.load < candidate.capacity
        and (skill is None or skill in candidate.skills)
        and candidate.volunteer_id not in need.tried
    )


def rank(
    need: Need, candidates: Iterable[Candidate], neighbours: Mapping[str, Iterable[str]]
) -> list[Candidate]:
    """Eligible candidates, best first."""
    return sorted(
        (c for c in candidates if eligible(need, c)),
        key=lambda c: (
            grid_rank(need.grid_id, c.grid_id, neighbours),
            c.load,
            c.idle_since,
            c.volunteer_id,
        ),
    )


def queue(needs: Iterable[Need]) -> list[Need]:
    """Urgent first, then first come."""
    return sorted(needs, key=lambda n: (-n.priority, n.placed_at, n.order_id))
