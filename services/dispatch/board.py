"""A community's dispatch board: its open tasks and on-duty volunteers, and every decision
about them (派单). Pure: each method takes the time and returns the events it decided,
having applied them to the board; I/O belongs to the owner that persists the board.

Invariants the board keeps by construction:
- a task has at most one live offer or assignment (``Task.volunteer_id`` is one field);
- a volunteer's load is derived from the tasks, and an offer is only made below capacity;
- every task is waiting (visibly, and escalated once nobody fits), offered, assigned or
  picked up; delivered, failed and cancelled tasks leave the board.

The board keeps indexes beside its tasks and volunteers (who is free, by grid and skill;
who waits, by skill and urgency; who holds and who let pass what), so a decision costs
what it changes, not the size of the community. Every change to a task ends in
``_sync(order_id)`` and every change to a volunteer in ``_refile(volunteer_id)``: they
bring the indexes, and the list of documents to store, up to date.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from heapq import merge
from typing import Any, NoReturn

from pydantic import BaseModel, Field, PrivateAttr

from services.dispatch import matching
from shared.contracts import dispatch as d
from shared.contracts.base import Payload
from shared.contracts.orders import Category, Grid, HouseholdFlag, OrderFacts
from shared.contracts.volunteers import Skill
from shared.decision import Rejection

__all__ = ["Board", "Rejection", "Task", "TaskState", "Volunteer"]

MAX_CODE_ATTEMPTS = 5
LOCKED = (
    f"{MAX_CODE_ATTEMPTS} wrong handoff codes: delivery is locked and the grid worker was "
    "told; report the delivery as failed, or wait for the grid worker"
)


def photo_proves(category: str, household_flags: Iterable[str]) -> bool:
    """A photo shows something left at a door, not who took it in: enough where nothing
    is handed over (garbage) or the household cannot read a code off a screen."""
    return category == Category.garbage or HouseholdFlag.no_smartphone in household_flags


@dataclass
class Index:
    """What the board keeps beside its tasks and volunteers (see the module docstring)."""

    free: matching.FreeVolunteers = field(default_factory=matching.FreeVolunteers)
    waiting: matching.WaitingQueue = field(default_factory=matching.WaitingQueue)
    unescalated: set[str] = field(default_factory=set)  # waiting, grid worker not told
    holder: dict[str, str] = field(default_factory=dict)  # order -> volunteer
    held: dict[str, set[str]] = field(default_factory=dict)  # volunteer -> orders
    tried_of: dict[str, set[str]] = field(default_factory=dict)  # order -> volunteers
    tried_by: dict[str, set[str]] = field(default_factory=dict)  # volunteer -> orders
    dirty_tasks: set[str] = field(default_factory=set)
    dirty_volunteers: set[str] = field(default_factory=set)
    grids_dirty: bool = False
    touches: int = 0  # changes made, counted: a refusal after one cannot be undone here
    savepoint: int = 0
    stored_tasks: set[str] = field(default_factory=set)
    stored_volunteers: set[str] = field(default_factory=set)
    volunteer_docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # as last stored

    def agreement(self) -> dict[str, Any]:
        """What the indexes say, comparable with those of a board built anew (tests)."""
        return {
            "free": self.free.filed(),
            "waiting": self.waiting.queued(),
            "unescalated": self.unescalated,
            "held": {k: v for k, v in self.held.items() if v},
            "tried_by": {k: v for k, v in self.tried_by.items() if v},
        }

    def take_changes(self) -> tuple[list[str], list[str], bool]:
        changed = (sorted(self.dirty_tasks), sorted(self.dirty_volunteers), self.grids_dirty)
        self.dirty_tasks, self.dirty_volunteers, self.grids_dirty = set(), set(), False
        return changed


class TaskState(StrEnum):
    expected = "expected"  # its goods come from outside: not offered before they are at the gate
    waiting = "waiting"
    offered = "offered"
    assigned = "assigned"
    picked_up = "picked_up"


class Task(BaseModel):
    order: OrderFacts
    state: TaskState = TaskState.waiting
    volunteer_id: str | None = None
    offer_expires_at: datetime | None = None
    attempt: int = 0
    tried: list[str] = Field(default_factory=list)
    escalated: bool = False  # nobody suitable is free (cleared when someone is offered it)
    # Suitable cadres are on duty, all at capacity: it waits for one (busy is not absent);
    # the late timer tells the grid worker if that takes too long.
    waits_busy: bool = False
    late: bool = False  # not taken in time; the grid worker was told (once)
    wrong_codes: int = 0  # handoff codes given that did not match
    locked: bool = False  # too many wrong codes: only a failure report closes it now
    opened_at: datetime | None = None  # accepted or re-opened (None: stored before)

    def ref(self) -> d.OrderRef:
        return d.OrderRef(
            order_id=self.order.order_id,
            household_id=self.order.household_id,
            grid_id=self.order.grid_id,
        )


class Volunteer(BaseModel):
    volunteer_id: str
    name: str
    skills: list[Skill]
    capacity: int
    shift_grid_id: str | None = None  # None: off duty
    shift_id: str | None = None
    idle_since: datetime


class Board(BaseModel):
    community_id: str
    grids: dict[str, Grid] = Field(default_factory=dict)
    tasks: dict[str, Task] = Field(default_factory=dict)
    volunteers: dict[str, Volunteer] = Field(default_factory=dict)
    offer_timeout_seconds: float = 120.0
    escalate_after_seconds: float = 600.0
    _index: Index | None = PrivateAttr(default=None)

    # --- bookkeeping ---------------------------------------------------------------------

    def model_post_init(self, context: object) -> None:
        """The indexes, built from the tasks and volunteers a board starts with (restored
        from its documents: all of them stored already); every decision keeps them."""
        self._index = Index(stored_tasks=set(self.tasks), stored_volunteers=set(self.volunteers))
        for order_id in self.tasks:
            self._sync(order_id)
        for volunteer_id in self.volunteers:
            self._refile(volunteer_id)
        self._index.take_changes()

    @property
    def ix(self) -> Index:
        # Read from pydantic's private store directly: its attribute hook costs more than
        # the matching itself on this path.
        index: Index = self.__pydantic_private__["_index"]  # type: ignore[index]
        return index

    def load(self, volunteer_id: str) -> int:
        return len(self.ix.held.get(volunteer_id, ()))

    def held_by(self, volunteer_id: str) -> list[Task]:
        return [self.tasks[o] for o in sorted(self.ix.held.get(volunteer_id, ()))]

    def _sync(self, order_id: str) -> None:
        """Bring the indexes in line with the task as it is now (or gone)."""
        ix = self.ix
        task = self.tasks.get(order_id)
        before = ix.holder.pop(order_id, None)
        if before is not None:
            ix.held[before].discard(order_id)
        ix.waiting.remove(order_id)
        ix.unescalated.discard(order_id)
        for volunteer_id in ix.tried_of.pop(order_id, ()):
            ix.tried_by[volunteer_id].discard(order_id)
        after = task.volunteer_id if task is not None else None
        if task is not None:
            if after is not None:
                ix.holder[order_id] = after
                ix.held.setdefault(after, set()).add(order_id)
            if task.state is TaskState.waiting:
                ix.waiting.add(need_of(task))
                if not (task.escalated or task.waits_busy):
                    ix.unescalated.add(order_id)
            ix.tried_of[order_id] = set(task.tried)
            for volunteer_id in task.tried:
                ix.tried_by.setdefault(volunteer_id, set()).add(order_id)
        ix.dirty_tasks.add(order_id)
        ix.touches += 1
        for holder in {before, after}:
            if holder is not None:
                self._refile(holder)

    def _refile(self, volunteer_id: str) -> None:
        ix = self.ix
        volunteer = self.volunteers.get(volunteer_id)
        ix.dirty_volunteers.add(volunteer_id)
        ix.touches += 1
        if volunteer is None or volunteer.shift_grid_id is None:
            ix.free.withdraw(volunteer_id)
            return
        ix.free.file(
            matching.Candidate(
                volunteer_id=volunteer_id,
                grid_id=volunteer.shift_grid_id,
                skills=frozenset(volunteer.skills),
                capacity=volunteer.capacity,
                load=len(ix.held.get(volunteer_id, ())),
                idle_since=volunteer.idle_since,
            )
        )

    def savepoint(self) -> None:
        self.ix.savepoint = self.ix.touches

    def rollback(self) -> bool:
        """The board's methods refuse before they change anything (every change ends in
        ``_sync``/``_refile``, which count it): a refusal after a change is not undone
        here but reported, and the owner decides again from the stored board."""
        return self.ix.touches == self.ix.savepoint

    def take_changes(self) -> tuple[list[str], list[str], bool]:
        """Tasks, volunteers (ids) and whether the grids changed since the last call."""
        return self.ix.take_changes()

    def neighbours(self) -> dict[str, list[str]]:
        return {g.grid_id: g.neighbours for g in self.grids.values()}

    # --- facts from orders and volunteers ------------------------------------------------

    def define(self, grids: list[Grid], now: datetime) -> list[Payload]:
        self.grids = {g.grid_id: g for g in grids}
        self.ix.grids_dirty = True
        self.ix.touches += 1
        return self.match(now)

    def order_open(self, facts: OrderFacts, now: datetime) -> list[Payload]:
        """An accepted or re-opened order joins the queue (unless it is already on it)."""
        if facts.order_id not in self.tasks:
            state = TaskState.expected if facts.awaits_gate else TaskState.waiting
            self.tasks[facts.order_id] = Task(order=facts, state=state, opened_at=now)
            self._sync(facts.order_id)
        return self.match(now)

    def at_gate(self, order_id: str, now: datetime) -> list[Payload]:
        """Its parcel is at the gate: now a cadre may carry it in (late counts from here)."""
        task = self.tasks.get(order_id)
        if task is None or task.state is not TaskState.expected:
            return []  # cancelled meanwhile, or not waiting for goods
        task.state, task.opened_at = TaskState.waiting, now
        self._sync(order_id)
        return self.match(now)

    def cancel(self, order_id: str, by_role: str, now: datetime) -> list[Payload]:
        """Whether a cancel still holds is the task's state: a resident may cancel until
        the goods are picked up, staff until the end; a delivered or failed order has left
        the board and is no longer open."""
        task = self.tasks.get(order_id)
        if task is None:
            return [d.CancelRefused(order_id=order_id, reason="the order is no longer open")]
        if by_role == "resident" and task.state is TaskState.picked_up:
            return [
                d.CancelRefused(
                    order_id=order_id,
                    reason="a volunteer has already picked it up; call the community to cancel",
                )
            ]
        self._drop(order_id)
        events: list[Payload] = [d.TaskCancelled(order=task.ref(), by_role=by_role)]
        if task.volunteer_id is not None:
            events.append(
                d.OfferWithdrawn(
                    order=task.ref(), volunteer_id=task.volunteer_id, reason="cancelled"
                )
            )
            self._freed(task.volunteer_id, now)
            self._available_again(task.volunteer_id)
        return events + self.match(now)

    def priority_changed(self, order_id: str, priority: int, now: datetime) -> list[Payload]:
        task = self.tasks.get(order_id)
        if task is not None:
            task.order = task.order.model_copy(update={"priority": priority})
            self._sync(order_id)
        return self.match(now)

    def volunteer_approved(
        self, volunteer_id: str, name: str, skills: list[Skill], capacity: int, now: datetime
    ) -> list[Payload]:
        known = self.volunteers.get(volunteer_id)
        self.volunteers[volunteer_id] = Volunteer(
            volunteer_id=volunteer_id,
            name=name,
            skills=skills,
            capacity=capacity,
            shift_grid_id=known.shift_grid_id if known else None,
            shift_id=known.shift_id if known else None,
            idle_since=known.idle_since if known else now,
        )
        self._refile(volunteer_id)
        # A lower capacity withdraws live offers above it; accepted tasks stay.
        events: list[Payload] = []
        for task in self.held_by(volunteer_id):
            if self.load(volunteer_id) <= capacity:
                break
            if task.volunteer_id == volunteer_id and task.state is TaskState.offered:
                events.append(
                    d.OfferWithdrawn(order=task.ref(), volunteer_id=volunteer_id, reason="capacity")
                )
                self._back_to_queue(task)
        return events + self.match(now)

    def shift_started(
        self, volunteer_id: str, shift_id: str, grid_id: str, now: datetime
    ) -> list[Payload]:
        volunteer = self.volunteers.get(volunteer_id)
        if volunteer is None:
            return []  # not approved (yet): the approval brings them in
        volunteer.shift_grid_id, volunteer.shift_id = grid_id, shift_id
        volunteer.idle_since = now
        self._refile(volunteer_id)
        self._available_again(volunteer_id)
        return self.match(now)

    def shift_ended(self, volunteer_id: str, shift_id: str, now: datetime) -> list[Payload]:
        volunteer = self.volunteers.get(volunteer_id)
        if volunteer is None or volunteer.shift_id != shift_id:
            return []
        volunteer.shift_grid_id = volunteer.shift_id = None
        self._refile(volunteer_id)
        # Orders waiting for a busy cadre may now have nobody suitable: looked at again.
        for task in self.tasks.values():
            if task.waits_busy:
                task.waits_busy = False
                self._sync(task.order.order_id)
        # Nothing waits on someone gone home: live offers and accepted tasks not picked up
        # go to someone else; goods already in hand stay (only that cadre has them) and
        # the grid worker is told at once, by name, to move them.
        events: list[Payload] = []
        for task in self.held_by(volunteer_id):
            if task.state is TaskState.offered:
                events.append(
                    d.OfferWithdrawn(order=task.ref(), volunteer_id=volunteer_id, reason="off duty")
                )
                self._back_to_queue(task)
            elif task.state is TaskState.assigned:
                events.append(self._release(task, "off duty"))
            elif not task.late:
                task.late = True  # told now; the late timer would only say it again
                self._sync(task.order.order_id)
                reason = (
                    f"{volunteer.name} went off duty with the goods picked up; "
                    "call them, or give the task to another cadre"
                )
                events.append(self._escalation(task, reason))
        return events + self.match(now)

    def _release(self, task: Task, reason: str) -> d.TaskReleased:
        """The task leaves its holder (not to be offered to them again this time)."""
        holder = task.volunteer_id or ""
        released = d.TaskReleased(
            order=task.ref(),
            volunteer_id=holder,
            reason=reason,
            state=task.state.value,  # type: ignore[arg-type]
        )
        self._back_to_queue(task)
        return released

    # --- staff ---------------------------------------------------------------------------

    def _waiting(self, order_id: str, grid_id: str | None = None) -> Task:
        task = self.tasks.get(order_id)
        if task is None or grid_id not in (None, task.order.grid_id):
            raise Rejection(404, "no such open order on the board")
        if task.state is not TaskState.waiting:
            raise Rejection(409, f"the order is {task.state}, not waiting")
        return task

    def offer_again(
        self, order_id: str, now: datetime, grid_id: str | None = None
    ) -> list[Payload]:
        """Staff send a waiting order round again (after phoning the cadres, say): whoever
        let it pass may be asked again, and it escalates again if nobody can take it. A grid
        worker (``grid_id``) may do so for their grid's orders only."""
        task = self._waiting(order_id, grid_id)
        task.tried.clear()
        task.escalated = False
        self._sync(order_id)
        return self.match(now)

    def offer_to(
        self, order_id: str, volunteer_id: str, now: datetime, grid_id: str | None = None
    ) -> list[Payload]:
        """Staff give a waiting order to the cadre they chose: on duty, with room (grid and
        skills are staff's call); the cadre still accepts or declines."""
        task = self._waiting(order_id, grid_id)
        volunteer = self.volunteers.get(volunteer_id)
        if volunteer is None or volunteer.shift_grid_id is None:
            raise Rejection(409, "the volunteer is not on duty")
        if self.load(volunteer_id) >= volunteer.capacity:
            raise Rejection(409, "the volunteer has no room: at capacity")
        if volunteer_id in task.tried:
            task.tried.remove(volunteer_id)
        return [self._offer(task, volunteer_id, now), *self.match(now)]

    def _held(self, order_id: str, grid_id: str | None) -> Task:
        task = self.tasks.get(order_id)
        if task is None or grid_id not in (None, task.order.grid_id):
            raise Rejection(404, "no such open order on the board")
        return task

    def release(
        self,
        order_id: str,
        reason: str,
        volunteer_id: str | None,
        now: datetime,
        grid_id: str | None = None,
    ) -> list[Payload]:
        """Staff take a task from whoever holds it (offered, accepted or picked up: a cadre
        gone home, unreachable) and offer it to the cadre they chose, or put it back in the
        queue. The reason is the command's, kept in the audit trail."""
        task = self._held(order_id, grid_id)
        if volunteer_id is not None:
            chosen = self.volunteers.get(volunteer_id)
            if chosen is None or chosen.shift_grid_id is None:
                raise Rejection(409, "the volunteer is not on duty")
            if volunteer_id != task.volunteer_id and self.load(volunteer_id) >= chosen.capacity:
                raise Rejection(409, "the volunteer has no room: at capacity")
        events: list[Payload] = []
        holder = task.volunteer_id
        if holder is not None:
            events.append(self._release(task, reason))
            self._available_again(holder)
        task.escalated = task.late = False
        if volunteer_id is not None:
            if volunteer_id in task.tried:
                task.tried.remove(volunteer_id)
            events.append(self._offer(task, volunteer_id, now))
        else:
            self._sync(order_id)
        return events + self.match(now)

    def unlock(self, order_id: str, reason: str, grid_id: str | None = None) -> list[Payload]:
        """Staff lift the lock of five wrong codes (they checked with the household)."""
        task = self._held(order_id, grid_id)
        if not task.locked:
            raise Rejection(409, "the delivery is not locked", "Not locked")
        task.locked, task.wrong_codes = False, 0
        self._sync(order_id)
        return [d.TaskUnlocked(order=task.ref(), volunteer_id=task.volunteer_id, reason=reason)]

    # --- the volunteer's answers and the owner's timer -----------------------------------

    def _task_of(self, order_id: str, volunteer_id: str, *states: TaskState) -> Task:
        task = self.tasks.get(order_id)
        if task is None or task.volunteer_id != volunteer_id:
            raise Rejection(404, "no such offer or task for you")
        if task.state not in states:
            raise Rejection(409, f"the task is {task.state}")
        return task

    def accept(self, order_id: str, volunteer_id: str, now: datetime) -> list[Payload]:
        task = self._task_of(order_id, volunteer_id, TaskState.offered)
        task.state, task.offer_expires_at = TaskState.assigned, None
        self._sync(order_id)
        name = self.volunteers[volunteer_id].name if volunteer_id in self.volunteers else ""
        return [d.TaskAssigned(order=task.ref(), volunteer_id=volunteer_id, volunteer_name=name)]

    def decline(self, order_id: str, volunteer_id: str, now: datetime) -> list[Payload]:
        task = self._task_of(order_id, volunteer_id, TaskState.offered)
        self._back_to_queue(task)
        self._freed(volunteer_id, now)
        return [d.OfferDeclined(order=task.ref(), volunteer_id=volunteer_id), *self.match(now)]

    def expire(
        self, order_id: str, volunteer_id: str, attempt: int, now: datetime
    ) -> list[Payload]:
        task = self.tasks.get(order_id)
        if (
            task is None
            or task.state is not TaskState.offered
            or task.volunteer_id != volunteer_id
            or task.attempt != attempt
            or (task.offer_expires_at is not None and task.offer_expires_at > now)
        ):
            return []  # answered in time, already moved on, or another life's offer
        self._back_to_queue(task)
        self._freed(volunteer_id, now)
        return [d.OfferExpired(order=task.ref(), volunteer_id=volunteer_id), *self.match(now)]

    def pick_up(self, order_id: str, volunteer_id: str, now: datetime) -> list[Payload]:
        task = self._task_of(order_id, volunteer_id, TaskState.assigned)
        task.state = TaskState.picked_up
        self._sync(order_id)
        picked: list[Payload] = [d.TaskPickedUp(order=task.ref(), volunteer_id=volunteer_id)]
        # Their batch has left the gate: the next building's parcels may be theirs.
        return [*picked, *self.match(now)] if self._batched(task) else picked

    def deliver(
        self,
        order_id: str,
        volunteer_id: str,
        handoff_code: str | None,
        photo_url: str | None,
        now: datetime,
    ) -> list[Payload]:
        task = self._task_of(order_id, volunteer_id, TaskState.assigned, TaskState.picked_up)
        if task.locked:
            raise Rejection(423, LOCKED, "Locked")
        if handoff_code is not None:
            if handoff_code.strip() != task.order.handoff_code:
                self._wrong_code(task)
            proof = "handoff_code"
        elif photo_url:
            if not photo_proves(task.order.category, task.order.household_flags):
                raise Rejection(
                    422,
                    "a photo is proof only for garbage pickup and for households without a "
                    "smartphone; give the household's handoff code",
                )
            proof = "photo"
        else:
            raise Rejection(422, "proof is required: the household's handoff code or a photo URL")
        self._drop(order_id)
        self._freed(volunteer_id, now)
        self._available_again(volunteer_id)
        delivered = d.TaskDelivered(
            order=task.ref(),
            volunteer_id=volunteer_id,
            proof=proof,  # type: ignore[arg-type]
            photo_url=photo_url if proof == "photo" else None,
        )
        return [delivered, *self.match(now)]

    def deliver_by_code(self, volunteer_id: str, code: str, now: datetime) -> list[Payload]:
        """The code names the task: the one of the cadre's, taken, whose code it is. A code
        that is none of theirs counts as a wrong code only when they hold one task (it can
        only have been meant for that one)."""
        held = [
            t
            for t in self.held_by(volunteer_id)
            if t.state in (TaskState.assigned, TaskState.picked_up)
        ]
        if not held:
            raise Rejection(404, "you have no task to deliver")
        matching = [t for t in held if t.order.handoff_code == code.strip()]
        if matching:
            return self.deliver(matching[0].order.order_id, volunteer_id, code, None, now)
        if len(held) == 1:
            return self.deliver(held[0].order.order_id, volunteer_id, code, None, now)
        raise Rejection(422, "no task of yours has this code: check it with the household")

    def _wrong_code(self, task: Task) -> NoReturn:
        """Four digits are guessed in minutes without a limit: a few tries, then the task
        locks and its grid worker is told (the attempt count is kept, so it refuses)."""
        task.wrong_codes += 1
        self._sync(task.order.order_id)
        left = MAX_CODE_ATTEMPTS - task.wrong_codes
        if left > 0:
            raise Rejection(
                422,
                f"the handoff code does not match this household's ({left} tries left)",
                counts=True,
            )
        task.locked = True
        self._sync(task.order.order_id)
        reason = f"{MAX_CODE_ATTEMPTS} wrong handoff codes: delivery locked"
        raise Rejection(423, LOCKED, "Locked", events=[self._escalation(task, reason)], counts=True)

    def fail(
        self,
        order_id: str,
        volunteer_id: str,
        reason: d.FailureReason,
        note: str | None,
        now: datetime,
    ) -> list[Payload]:
        task = self._task_of(order_id, volunteer_id, TaskState.assigned, TaskState.picked_up)
        self._drop(order_id)  # staff decide: re-open (it comes back) or close
        self._freed(volunteer_id, now)
        self._available_again(volunteer_id)
        failed = d.TaskFailed(order=task.ref(), volunteer_id=volunteer_id, reason=reason, note=note)
        return [failed, *self.match(now)]

    def late_orders(self, now: datetime) -> list[Task]:
        """Orders still not taken this long after they were accepted (or re-opened: the
        time held for review or spent in a first life does not count), not yet escalated."""
        limit = timedelta(seconds=self.escalate_after_seconds)
        return [
            t
            for t in self.tasks.values()
            if t.state in (TaskState.waiting, TaskState.offered)
            and not t.late
            and now - (t.opened_at or t.order.placed_at) >= limit
        ]

    def escalate_late(self, order_id: str, now: datetime) -> list[Payload]:
        """Late things escalate by themselves: the grid worker hears of an order that is
        still not taken, even while offers go round."""
        task = self.tasks.get(order_id)
        if task is None or task.late or task.state not in (TaskState.waiting, TaskState.offered):
            return []
        task.late = True
        self._sync(order_id)
        minutes = int((now - (task.opened_at or task.order.placed_at)).total_seconds() // 60)
        busy = ": every suitable cadre on duty is busy" if task.waits_busy else ""
        return [self._escalation(task, f"not taken after {minutes} minutes{busy}")]

    def _escalation(self, task: Task, reason: str) -> d.OrderEscalated:
        grid = self.grids.get(task.order.grid_id)
        return d.OrderEscalated(
            order=task.ref(),
            grid_worker=grid.grid_worker if grid else "",
            grid_worker_phone=grid.grid_worker_phone if grid else "",
            reason=reason,
        )

    def due_offers(self, now: datetime) -> list[Task]:
        return [
            t
            for t in self.tasks.values()
            if t.state is TaskState.offered and t.offer_expires_at and t.offer_expires_at <= now
        ]

    # --- matching ------------------------------------------------------------------------

    def _back_to_queue(self, task: Task) -> None:
        if task.volunteer_id and task.volunteer_id not in task.tried:
            task.tried.append(task.volunteer_id)
        task.state, task.volunteer_id, task.offer_expires_at = TaskState.waiting, None, None
        self._sync(task.order.order_id)

    def _drop(self, order_id: str) -> None:
        del self.tasks[order_id]
        self._sync(order_id)

    def _freed(self, volunteer_id: str, now: datetime) -> None:
        volunteer = self.volunteers.get(volunteer_id)
        if volunteer is not None:
            volunteer.idle_since = now
            self._refile(volunteer_id)

    def _available_again(self, volunteer_id: str) -> None:
        """A volunteer who finished a task or came on duty may be asked again about an
        escalated order they once let pass: nobody else could take it."""
        for order_id in sorted(self.ix.tried_by.get(volunteer_id, ())):
            task = self.tasks[order_id]
            if task.escalated:
                task.tried.remove(volunteer_id)
                self._sync(order_id)

    def match(self, now: datetime) -> list[Payload]:
        """Offer every waiting task, most urgent first, to its best candidate; escalate the
        ones nobody can take (once, until someone suitable appears).

        Only the lines of skills someone free has are walked, and each only while someone
        with that skill is free (an offer only ever takes capacity away): with everyone
        busy a new order costs its own escalation, not a walk of the queue."""
        ix = self.ix
        lines_free = [skill for skill in ix.waiting.skills() if ix.free.anyone_with(skill)]
        if not lines_free and not ix.unescalated:
            return []  # the common case on a busy day: nobody free for anyone waiting
        neighbours = self.neighbours()
        decided: dict[str, Payload] = {}
        lines = [self._while_free(skill) for skill in lines_free]
        for (_, _, order_id), skill in merge(*lines):
            if not ix.free.anyone_with(skill):
                continue  # taken since it was drawn: the line ends with its next draw
            task = self.tasks[order_id]
            if task.state is not TaskState.waiting:
                continue  # offered meanwhile, with a parcel of its building
            chosen = self._carrying_to(task, now) or ix.free.best(self._need(task), neighbours)
            if chosen is not None:
                decided[order_id] = self._offer(task, chosen, now)
            elif self._batched_elsewhere(task, neighbours):
                # Someone is free, but carrying another building's parcels from the gate:
                # this one waits for a batch of its own (late still escalates it).
                task.waits_busy = True
                self._sync(order_id)
            elif not task.escalated:
                decided[order_id] = self._escalate_waiting(task)
        # Whoever is left unescalated has nobody free with their skill at all: they wait
        # for a busy cadre, or the grid worker is told now that nobody suitable is here.
        for order_id in list(ix.unescalated):
            task = self.tasks[order_id]
            if self._suitable_on_duty(task):
                task.waits_busy = True
                self._sync(order_id)
            else:
                decided[order_id] = self._escalate_waiting(task)
        return [decided[o] for o in sorted(decided, key=lambda o: urgency_of(self.tasks[o]))]

    def _carrying_to(self, task: Task, now: datetime) -> str | None:
        """Building batches (外围派单): a parcel at the gate goes to the cadre already
        carrying parcels from the gate to its building, while they have room — one walk
        up the stairs, not one per parcel. Nobody yet: matching as for any task."""
        if not (task.order.awaits_gate and task.order.building):
            return None
        skill = matching.REQUIRED_SKILL[Category(task.order.category)]
        for volunteer_id, held in self.ix.held.items():
            volunteer = self.volunteers.get(volunteer_id)
            if (
                volunteer is None
                or volunteer.shift_grid_id is None
                or len(held) >= volunteer.capacity
                or volunteer_id in task.tried
                or (skill is not None and skill not in volunteer.skills)
            ):
                continue
            if any(
                (mate := self.tasks.get(o)) is not None
                and mate.order.awaits_gate
                and mate.order.building == task.order.building
                and mate.state in (TaskState.offered, TaskState.assigned)
                for o in held
            ):
                return volunteer_id
        return None

    def _need(self, task: Task) -> matching.Need:
        """What matching looks for. A parcel from the gate is not given to a cadre carrying
        another building's parcels from the gate: a batch is one building's, one walk up
        its stairs (urgency still orders the walk: the next batch starts with medicine)."""
        need = need_of(task)
        if not self._batched(task):
            return need
        elsewhere = self._carrying_elsewhere(task.order.building or "")
        return need._replace(tried=need.tried | elsewhere) if elsewhere else need

    def _batched(self, task: Task) -> bool:
        return task.order.awaits_gate and bool(task.order.building)

    def _carrying_elsewhere(self, building: str) -> frozenset[str]:
        """Cadres with parcels from the gate to another building, not yet picked up."""
        return frozenset(
            volunteer_id
            for volunteer_id, held in self.ix.held.items()
            if any(
                (mate := self.tasks.get(o)) is not None
                and mate.order.awaits_gate
                and mate.order.building not in (None, building)
                and mate.state in (TaskState.offered, TaskState.assigned)
                for o in held
            )
        )

    def _batched_elsewhere(self, task: Task, neighbours: Mapping[str, Iterable[str]]) -> bool:
        return self._batched(task) and self.ix.free.best(need_of(task), neighbours) is not None

    def _while_free(self, skill: Skill | None) -> Iterator[tuple[matching.Urgency, Skill | None]]:
        for urgency in self.ix.waiting.walk(skill):
            if not self.ix.free.anyone_with(skill):
                return
            yield urgency, skill

    def _offer(self, task: Task, volunteer_id: str, now: datetime) -> Payload:
        task.state, task.volunteer_id = TaskState.offered, volunteer_id
        task.waits_busy = False
        task.attempt += 1
        task.offer_expires_at = now + timedelta(seconds=self.offer_timeout_seconds)
        task.escalated = False
        self._sync(task.order.order_id)
        return d.OfferMade(
            order=task.ref(),
            volunteer_id=volunteer_id,
            expires_at=task.offer_expires_at,
            category=task.order.category,
            address=task.order.address,
            items=task.order.items,
            attempt=task.attempt,
            building=task.order.building if self._batched(task) else None,
        )

    def _suitable_on_duty(self, task: Task) -> bool:
        """Someone on duty who could take it when free: the skill, in its grid or a
        neighbour, not one who let it pass."""
        skill = matching.REQUIRED_SKILL[Category(task.order.category)]
        grids = {task.order.grid_id, *self.neighbours().get(task.order.grid_id, ())}
        return any(
            v.shift_grid_id in grids
            and (skill is None or skill in v.skills)
            and v.volunteer_id not in task.tried
            for v in self.volunteers.values()
        )

    def _escalate_waiting(self, task: Task) -> Payload:
        task.escalated = True
        self._sync(task.order.order_id)
        reason = (
            "every suitable volunteer declined or did not answer"
            if task.tried
            else "no suitable volunteer on duty"
        )
        return self._escalation(task, reason)


def need_of(task: Task) -> matching.Need:
    return matching.Need(
        order_id=task.order.order_id,
        grid_id=task.order.grid_id,
        category=Category(task.order.category),
        priority=task.order.priority,
        placed_at=task.order.placed_at,
        tried=frozenset(task.tried),
    )


def urgency_of(task: Task) -> matching.Urgency:
    return (-task.order.priority, task.order.placed_at.timestamp(), task.order.order_id)
