"""Who gets offered what, and in which order. Pure: no I/O, no clock.

- Orders: most urgent first (priority), then the longest waiting.
- Candidates for an order: on duty in its community, free capacity, the needed skill, not
  already tried for this order. Preferred: the order's grid, then its neighbours, then the
  rest of the community; then cadres without a scarce skill (a driver, a medic: a groceries
  run must not take the only driver a later transfer needs); among equals the least
  loaded, then the one idle longest — so the work is spread fairly and nobody is sent
  across the whole community while a neighbour is free.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import NamedTuple

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
# Skills few cadres have, whose work cannot wait for someone else: kept free for it.
SCARCE = frozenset({Skill.driving, Skill.medical})


def scarce(skills: frozenset[Skill]) -> int:
    """1 for a cadre with a scarce skill: asked last for work anyone could do (for work
    that needs the skill, everyone asked has it, so the order among them is unchanged)."""
    return 1 if skills & SCARCE else 0


class Candidate(NamedTuple):  # tuples: made for every refiling, a frozen dataclass costs 3×
    volunteer_id: str
    grid_id: str  # where the shift is
    skills: frozenset[Skill]
    capacity: int
    load: int  # tasks held, live offers included
    idle_since: datetime


class Need(NamedTuple):
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
            scarce(c.skills),
            c.load,
            c.idle_since,
            c.volunteer_id,
        ),
    )


def queue(needs: Iterable[Need]) -> list[Need]:
    """Urgent first, then first come."""
    return sorted(needs, key=lambda n: (-n.priority, n.placed_at, n.order_id))


# --- the indexes a board decides with -------------------------------------------------------
# ``rank`` and ``queue`` above say what is chosen; these find the same answer without
# walking every volunteer and order: a decision touches only what it changes (10,000
# cadres and 5,000 waiting orders in one community must not cost a scan per input).
# The files are plain lists kept sorted with ``bisect``: at these sizes (a grid's cadres,
# a community's waiting orders) a C-level insort or delete, memmove included, costs a
# fraction of a microsecond where a SortedList's Python-level bookkeeping costs several.

# The moments are POSIX timestamps (floats keep microseconds at today's dates): sorting
# compares them thousands of times per decision, and two aware datetimes compare through
# their UTC offsets each time, several times slower than two floats.
Fairness = tuple[int, int, float, str]  # scarce, load, idle since, volunteer id: best first
Urgency = tuple[int, float, str]  # -priority, placed at, order id: first first
ANY_SKILL: None = None


class FreeVolunteers:
    """On-duty volunteers with free capacity, per (grid, skill), fairest first. A volunteer
    is filed under each of their skills (one without any under ``ANY_SKILL``); an order
    that needs no skill takes the fairest first of all of a grid's files."""

    def __init__(self) -> None:
        self._files: dict[tuple[str, Skill | None], list[Fairness]] = {}
        self._grid_files: dict[str, list[list[Fairness]]] = {}  # every file of a grid
        self._filed: dict[str, tuple[Fairness, str, tuple[Skill | None, ...]]] = {}
        self._free_with: dict[Skill | None, int] = {}
        self._skills: dict[frozenset[Skill], tuple[Skill | None, ...]] = {}

    def _filed_under(self, skills: frozenset[Skill]) -> tuple[Skill | None, ...]:
        filed = self._skills.get(skills)
        if filed is None:
            filed = self._skills[skills] = tuple(sorted(skills)) or (ANY_SKILL,)
        return filed

    def file(self, candidate: Candidate) -> None:
        """(Re)file a volunteer as they are now: free only below capacity."""
        vid, grid_id = candidate.volunteer_id, candidate.grid_id
        fairness = (scarce(candidate.skills), candidate.load, candidate.idle_since.timestamp(), vid)
        skills = self._filed_under(candidate.skills)
        free = candidate.load < candidate.capacity
        filed = self._filed.get(vid)
        if filed is not None:
            if free and filed == (fairness, grid_id, skills):
                return  # filed as they are
            self.withdraw(vid)
        if not free:
            return
        files, free_with = self._files, self._free_with
        for skill in skills:
            filed_under = files.get((grid_id, skill))
            if filed_under is None:
                filed_under = files[(grid_id, skill)] = []
                self._grid_files.setdefault(grid_id, []).append(filed_under)
            insort(filed_under, fairness)
            if skill is not ANY_SKILL:
                free_with[skill] = free_with.get(skill, 0) + 1
        free_with[ANY_SKILL] = free_with.get(ANY_SKILL, 0) + 1
        self._filed[vid] = (fairness, grid_id, skills)

    def withdraw(self, volunteer_id: str) -> None:
        filed = self._filed.pop(volunteer_id, None)
        if filed is None:
            return
        fairness, grid_id, skills = filed
        files, free_with = self._files, self._free_with
        for skill in skills:
            filed_under = files[(grid_id, skill)]
            del filed_under[bisect_left(filed_under, fairness)]
            if skill is not ANY_SKILL:
                free_with[skill] -= 1
        free_with[ANY_SKILL] -= 1

    def filed(self) -> dict[str, tuple[Fairness, str]]:
        """Who is filed where (to check the index against one built anew)."""
        return {vid: (fairness, grid) for vid, (fairness, grid, _) in self._filed.items()}

    def anyone_with(self, skill: Skill | None) -> bool:
        return self._free_with.get(skill, 0) > 0

    def best(self, need: Need, neighbours: Mapping[str, Iterable[str]]) -> str | None:
        """``rank(need, ...)[0]``: the order's grid, then its neighbours, then the rest;
        within a tier the fairest volunteer not yet tried."""
        skill = REQUIRED_SKILL[need.category]
        if skill is not ANY_SKILL and not need.tried:  # the usual case, at its shortest
            filed = self._files.get((need.grid_id, skill))
            if filed:
                return filed[0][3]
        chosen = self._first(need.grid_id, skill, need.tried)
        if chosen is not None:
            return chosen[3]
        near = set(neighbours.get(need.grid_id, ()))
        near.discard(need.grid_id)
        for tier in (near, self._grid_files.keys() - near - {need.grid_id}):
            for grid_id in tier:
                first = self._first(grid_id, skill, need.tried)
                if first is not None and (chosen is None or first < chosen):
                    chosen = first
            if chosen is not None:
                return chosen[3]
        return None

    def _first(self, grid_id: str, skill: Skill | None, tried: frozenset[str]) -> Fairness | None:
        if skill is ANY_SKILL:  # the fairest of each of the grid's files
            firsts = (_untried(f, tried) for f in self._grid_files.get(grid_id, ()))
            return min((f for f in firsts if f is not None), default=None)
        return _untried(self._files.get((grid_id, skill)), tried)


def _untried(filed: list[Fairness] | None, tried: frozenset[str]) -> Fairness | None:
    if not filed:
        return None
    if not tried:
        return filed[0]
    for fairness in filed:
        if fairness[3] not in tried:
            return fairness
    return None


class WaitingQueue:
    """Waiting orders per required skill, most urgent first, then first come."""

    def __init__(self) -> None:
        self._lines: dict[Skill | None, list[Urgency]] = {}
        self._queued: dict[str, tuple[Urgency, Skill | None]] = {}

    def add(self, need: Need) -> None:
        self.remove(need.order_id)
        urgency = (-need.priority, need.placed_at.timestamp(), need.order_id)
        skill = REQUIRED_SKILL[need.category]
        line = self._lines.get(skill)
        if line is None:
            line = self._lines[skill] = []
        insort(line, urgency)
        self._queued[need.order_id] = (urgency, skill)

    def remove(self, order_id: str) -> None:
        queued = self._queued.pop(order_id, None)
        if queued is not None:
            line = self._lines[queued[1]]
            del line[bisect_left(line, queued[0])]

    def urgency(self, order_id: str) -> Urgency | None:
        queued = self._queued.get(order_id)
        return queued[0] if queued else None

    def skills(self) -> list[Skill | None]:
        return [skill for skill, line in self._lines.items() if line]

    def walk(self, skill: Skill | None) -> Iterator[Urgency]:
        """One skill's line in order, lazily, while the walker takes orders off it: each
        step finds the first order after the last one seen."""
        line = self._lines.get(skill)
        if not line:
            return
        last = line[0]
        yield last
        while True:
            after = bisect_right(line, last)
            if after >= len(line):
                return
            last = line[after]
            yield last

    def queued(self) -> dict[str, Urgency]:
        return {order_id: urgency for order_id, (urgency, _) in self._queued.items()}

    def __len__(self) -> int:
        return len(self._queued)
