"""Dispatch's rules: one explicit table from input type to a board decision, one line each.

Pure: the shared owner (``shared.owner.CommunityLog``) feeds a community's inputs to its
board and stores what they decide as one log entry; the documents it derives (one per open
task, one per volunteer, one for the community's grids) are the read model and the
snapshot a new owner restores from. A decision's entry holds only the documents it
changed: a community with 5,000 open tasks does not rewrite them all per input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from services.dispatch.board import Board, TaskState
from shared.contracts import dispatch as d
from shared.contracts import orders as o
from shared.contracts import supply as s
from shared.contracts import volunteers as v
from shared.contracts.base import Payload
from shared.decision import Change, Decide, Decision, Rejection
from shared.events import Event
from shared.outcome import Outcome
from shared.topics import DISPATCH_EVENTS

BOARDS = "boards"  # one per community: its grids
TASKS = "tasks"  # one per open task: "{community}:{order}"
CADRES = "volunteers"  # one per volunteer the community's board knows: "{community}:{vid}"
Apply = Callable[[Board, Any, datetime], list[Payload]]


def fact(apply: Apply) -> Decide[Board]:
    def decide(board: Board, event: Event, now: datetime) -> Decision:
        return Decision(apply(board, event.data, now))

    return decide


def command(apply: Apply) -> Decide[Board]:
    """A volunteer's answer: its outcome is the task's state after it (a refusal raises)."""

    def decide(board: Board, event: Event, now: datetime) -> Decision:
        events = apply(board, event.data, now)
        order_id: str = event.data.order_id  # type: ignore[union-attr]
        task = board.tasks.get(order_id)
        state = task.state.value if task else "closed"
        return Decision(events, Outcome.ok({"order_id": order_id, "state": state}))

    return decide


def by_code(board: Board, event: Event, now: datetime) -> Decision:
    """A delivery named by its code: the answer says which order it was."""
    cmd = event.data
    assert isinstance(cmd, d.DeliverByCode)
    held = {t.order.order_id for t in board.held_by(cmd.volunteer_id)}
    events = board.deliver_by_code(cmd.volunteer_id, cmd.handoff_code, now)
    done = next((e for e in events if isinstance(e, d.TaskDelivered)), None)
    order_id = done.order.order_id if done else next(iter(held), "")
    return Decision(events, Outcome.ok({"order_id": order_id, "state": "closed"}))


def take_batch(board: Board, event: Event, now: datetime) -> Decision:
    """A building's parcels taken as one: each order as its own accept (and pick-up) would
    be; those no longer the cadre's are refused by name, the others go ahead. None taken:
    the whole answer is a refusal."""
    cmd = event.data
    assert isinstance(cmd, d.TakeBatch)
    events: list[Payload] = []
    taken, refused = [], []
    for order_id in dict.fromkeys(cmd.order_ids):  # named twice: taken once
        task = board.tasks.get(order_id)
        try:
            if task is None or task.volunteer_id != cmd.volunteer_id:
                raise Rejection(404, "no such offer or task for you")
            if task.state is TaskState.offered:
                events += board.accept(order_id, cmd.volunteer_id, now)
            elif task.state is not TaskState.assigned:
                raise Rejection(409, f"the task is {task.state.value}")
            if cmd.pick_up:
                events += board.pick_up(order_id, cmd.volunteer_id, now)
        except Rejection as why:
            refused.append({"order_id": order_id, "status": why.status, "reason": why.reason})
            continue
        taken.append(order_id)
    if not taken:
        raise Rejection(409, "; ".join(f"{r['order_id']}: {r['reason']}" for r in refused))
    return Decision(events, Outcome.ok({"taken": taken, "refused": refused}))


class DispatchRules:
    service: str = "dispatch"
    events_topic: str = DISPATCH_EVENTS
    collections: tuple[str, ...] = (BOARDS, TASKS, CADRES)

    def __init__(self, offer_timeout_seconds: float, escalate_after_seconds: float) -> None:
        self.offer_timeout = offer_timeout_seconds
        self.escalate_after = escalate_after_seconds

    def table(self) -> Mapping[type[Any], Decide[Board]]:
        return {
            o.CommunityDefined: fact(lambda b, p, t: b.define(p.grids, t)),
            o.OrderAccepted: fact(lambda b, p, t: b.order_open(p.order, t)),
            o.OrderReopened: fact(lambda b, p, t: b.order_open(p.order, t)),
            s.ParcelArrived: fact(lambda b, p, t: b.at_gate(p.order_id, t)),
            o.OrderCancelRequested: fact(lambda b, p, t: b.cancel(p.order_id, p.by_role, t)),
            o.OrderPriorityChanged: fact(
                lambda b, p, t: b.priority_changed(p.order_id, p.priority, t)
            ),
            v.VolunteerApproved: fact(
                lambda b, p, t: b.volunteer_approved(
                    p.volunteer_id, p.name, p.skills, p.capacity, t
                )
            ),
            v.ShiftStarted: fact(
                lambda b, p, t: b.shift_started(p.volunteer_id, p.shift_id, p.grid_id, t)
            ),
            v.ShiftEnded: fact(lambda b, p, t: b.shift_ended(p.volunteer_id, p.shift_id, t)),
            d.AcceptOffer: command(lambda b, p, t: b.accept(p.order_id, p.volunteer_id, t)),
            d.DeclineOffer: command(lambda b, p, t: b.decline(p.order_id, p.volunteer_id, t)),
            d.PickUp: command(lambda b, p, t: b.pick_up(p.order_id, p.volunteer_id, t)),
            d.TakeBatch: take_batch,
            d.Deliver: command(
                lambda b, p, t: b.deliver(
                    p.order_id, p.volunteer_id, p.handoff_code, p.photo_url, t
                )
            ),
            d.ReportFailure: command(
                lambda b, p, t: b.fail(p.order_id, p.volunteer_id, p.reason, p.note, t)
            ),
            d.OfferAgain: command(lambda b, p, t: b.offer_again(p.order_id, t, p.grid_id)),
            d.OfferTo: command(
                lambda b, p, t: b.offer_to(p.order_id, p.volunteer_id, t, p.grid_id)
            ),
            d.DeliverByCode: by_code,
            d.ReleaseTask: command(
                lambda b, p, t: b.release(p.order_id, p.reason, p.volunteer_id, t, p.grid_id)
            ),
            d.UnlockTask: command(lambda b, p, t: b.unlock(p.order_id, p.reason, p.grid_id)),
            d.EscalateLateOrder: fact(lambda b, p, t: b.escalate_late(p.order_id, t)),
            d.ExpireOffer: fact(lambda b, p, t: b.expire(p.order_id, p.volunteer_id, p.attempt, t)),
        }

    def restore(self, community_id: str, docs: dict[str, list[dict[str, Any]]]) -> Board:
        boards = docs.get(BOARDS) or [{}]
        if "board" in boards[0]:
            # Stored before boards were split into documents: all of it is written anew.
            board = Board.model_validate(boards[0]["board"])
            board.ix.stored_tasks, board.ix.stored_volunteers = set(), set()
            board.ix.dirty_tasks, board.ix.dirty_volunteers = (
                set(board.tasks),
                set(board.volunteers),
            )
            board.ix.grids_dirty = True
        else:
            board = Board(
                community_id=community_id,
                grids=boards[0].get("grids", {}),
                tasks={t["task"]["order"]["order_id"]: t["task"] for t in docs.get(TASKS, [])},
                volunteers={
                    v["volunteer"]["volunteer_id"]: v["volunteer"] for v in docs.get(CADRES, [])
                },
            )
            # As stored: a cadre whose document does not change is not written again.
            board.ix.volunteer_docs = {
                vid: volunteer.model_dump(mode="json")
                for vid, volunteer in board.volunteers.items()
            }
        board.offer_timeout_seconds = self.offer_timeout
        board.escalate_after_seconds = self.escalate_after
        return board

    def changes(self, board: Board) -> list[Change]:
        """The documents of the tasks and volunteers the decisions touched (a task that
        left the board is removed), and the grids if they were defined again."""
        tasks, volunteers, grids = board.take_changes()
        community = board.community_id
        stored_tasks, stored_volunteers = board.ix.stored_tasks, board.ix.stored_volunteers
        changes: list[Change] = []
        if grids:
            grid_docs = {g: grid.model_dump(mode="json") for g, grid in board.grids.items()}
            doc = {"_id": community, "community_id": community, "grids": grid_docs}
            changes.append(Change(BOARDS, community, doc))
        for order_id in tasks:
            task = board.tasks.get(order_id)
            doc_id = f"{community}:{order_id}"
            if task is not None:
                doc = {
                    "_id": doc_id,
                    "community_id": community,
                    "task": task.model_dump(mode="json"),
                }
                changes.append(Change(TASKS, doc_id, doc, new=order_id not in stored_tasks))
                stored_tasks.add(order_id)
            elif order_id in stored_tasks:
                changes.append(Change(TASKS, doc_id, None))
                stored_tasks.discard(order_id)
        for volunteer_id in volunteers:
            volunteer = board.volunteers.get(volunteer_id)
            if volunteer is None:
                continue  # volunteers are never removed from a board
            doc_id = f"{community}:{volunteer_id}"
            dump = volunteer.model_dump(mode="json")
            if board.ix.volunteer_docs.get(volunteer_id) == dump:
                continue  # only their load changed: that is the tasks' to say
            board.ix.volunteer_docs[volunteer_id] = dump
            doc = {"_id": doc_id, "community_id": community, "volunteer": dump}
            changes.append(Change(CADRES, doc_id, doc, new=volunteer_id not in stored_volunteers))
            stored_volunteers.add(volunteer_id)
        return changes
