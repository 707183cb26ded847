"""The offer timer: lapsed offers and orders not taken in time become commands on the
community's own partition, so they are ordered with the volunteers' answers and decided
by the owner like any other input (and survive a change of owner: a new owner's boards
re-arm them)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiokafka.errors import KafkaError

from services.dispatch.board import Board
from shared.contracts import dispatch as d
from shared.contracts.base import Payload
from shared.events import Event
from shared.kafka import EventPublisher
from shared.log import get_logger
from shared.owner import CommunityLog
from shared.topics import DISPATCH_COMMANDS

SOURCE = "/dispatch"
log = get_logger(__name__)


def due(board: Board, now: datetime) -> list[Payload]:
    """The commands the board's clock calls for now (ids fixed: sent twice, decided once)."""
    commands: list[Payload] = [
        d.EscalateLateOrder(command_id=f"late-{t.order.order_id}", order_id=t.order.order_id)
        for t in board.late_orders(now)
    ]
    commands += [
        d.ExpireOffer(
            command_id=f"expire-{t.order.order_id}-{t.attempt}",
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
    # A command counts as sent once the broker took it; one that failed goes next tick.
    sent: set[str] = set()
    while True:
        moment = datetime.now(UTC)
        for community_id, loaded in list(owner.loaded.items()):
            for command in due(loaded.state, moment):
                command_id: str = command.command_id  # type: ignore[attr-defined]
                if command_id in sent:
                    continue
                event = Event(id=command_id, source=SOURCE, community_id=community_id, data=command)
                try:
                    await publisher.publish(DISPATCH_COMMANDS, event)
                except (KafkaError, TimeoutError) as exc:
                    log.warning("dispatch.timer_send_failed", command=command_id, error=repr(exc))
                    continue
                sent.add(command_id)
        await asyncio.sleep(tick_seconds)
