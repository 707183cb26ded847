"""Dispatch's rules: one explicit table from input type to a board decision, one line each.

Pure: the shared owner (``shared.owner.CommunityLog``) feeds a community's inputs to its
board and stores what they decide as one log entry; the board document it derives is the
read model (and the snapshot a new owner restores from).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from services.dispatch.board import Board
from shared.commands import Outcome
from shared.contracts import dispatch as d
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.contracts.base import Payload
from shared.events import Event
from shared.owner import Change, Decide, Decision
from shared.topics import DISPATCH_EVENTS

BOARDS = "boards"
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


class DispatchRules:
    service: str = "dispatch"
    events_topic: str = DISPATCH_EVENTS
    collections: tuple[str, ...] = (BOARDS,)

    def __init__(self, offer_timeout_seconds: float, escalate_after_seconds: float) -> None:
        self.offer_timeout = offer_timeout_seconds
        self.escalate_after = escalate_after_seconds

    def table(self) -> Mapping[type[Any], Decide[Board]]:
        return {
            o.CommunityDefined: fact(lambda b, p, t: b.define(p.grids, t)),
            o.OrderAccepted: fact(lambda b, p, t: b.order_open(p.order, t)),
            o.OrderReopened: fact(lambda b, p, t: b.order_open(p.order, t)),
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
            d.Deliver: command(
                lambda b, p, t: b.deliver(
                    p.order_id, p.volunteer_id, p.handoff_code, p.photo_url, t
                )
            ),
            d.ReportFailure: command(
                lambda b, p, t: b.fail(p.order_id, p.volunteer_id, p.reason, p.note, t)
            ),
            d.EscalateLateOrder: fact(lambda b, p, t: b.escalate_late(p.order_id, t)),
            d.ExpireOffer: fact(lambda b, p, t: b.expire(p.order_id, p.volunteer_id, p.attempt, t)),
        }

    def restore(self, community_id: str, docs: dict[str, list[dict[str, Any]]]) -> Board:
        stored = docs.get(BOARDS) or []
        board = (
            Board.model_validate(stored[0]["board"]) if stored else Board(community_id=community_id)
        )
        board.offer_timeout_seconds = self.offer_timeout
        board.escalate_after_seconds = self.escalate_after
        board.stored = board.model_dump(mode="json")
        return board

    def changes(self, board: Board) -> list[Change]:
        """The whole board when it changed (it holds only open tasks and the community's
        volunteers), compared with what this board object last stored or was restored
        from (a reloaded board is a new object, with its own baseline)."""
        dump = board.model_dump(mode="json")
        if board.stored == dump:
            return []
        board.stored = dump
        doc = {"_id": board.community_id, "community_id": board.community_id, "board": dump}
        return [Change(BOARDS, board.community_id, doc)]
