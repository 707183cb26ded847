"""The offer timer: lapsed offers and orders not taken in time become commands on the
community's own partition, so they are ordered with the volunteers' answers and decided
by the owner like any other input (and survive a change of owner: a new owner's boards
re-arm them)."""

from __future__ import annotations

from datetime import datetime

from services.dispatch.board import Board
from shared.contracts import dispatch as d
from shared.contracts.base import Payload
from shared.kafka import EventPublisher
from shared.owner import CommunityLog
from shared.timer import run_timer
from shared.topics import DISPATCH_COMMANDS

SOURCE = "/dispatch"


def stamp(at: datetime | None) -> int:
    """A moment in an id: which offer, which life of an order."""
    return int(at.timestamp() * 1000) if at else 0


def due(board: Board, now: datetime) -> list[Payload]:
    """The commands the board's clock calls for now (ids fixed: sent twice, decided once;
    an order re-opened has new ones)."""
    commands: list[Payload] = [
        d.EscalateLateOrder(
            command_id=f"late-{t.order.order_id}-{stamp(t.opened_at or t.order.placed_at)}",
            order_id=t.order.order_id,
        )
        for t in board.late_orders(now)
    ]
    commands += [
        d.ExpireOffer(
            command_id=f"expire-{t.order.order_id}-{t.attempt}-{stamp(t.offer_expires_at)}",
            order_id=t.order.order_id,
            volunteer_id=t.volunteer_id,
            attempt=t.attempt,
        )
        for t in board.due_offers(now)
        if t.volunteer_id is not None
    ]
    return commands


async def run_offer_timer(
    owner: CommunityLog[Board], publisher: EventPublisher, tick_seconds: float = 0.5
) -> None:
    await run_timer(owner, publisher, DISPATCH_COMMANDS, SOURCE, due, tick_seconds=tick_seconds)
