"""The owners' clock: what a community's state calls for at a moment (a lapsed offer, a
late order, a shift past its end) becomes a command on the community's own partition, so
it is ordered with people's commands and decided by the owner like any other input — and
survives a change of owner (the new owner's state calls for it again).

Each command's id names the moment it is for (an offer's expiry, an order's opening, a
shift): sent twice, decided once; a later life of the same order has ids of its own. A
command counts as sent once the broker took it, and is remembered only while the state
still calls for it: sent again if it is still due ``resend_seconds`` later (the owner drops
a copy of a command it decided), forgotten once decided, so the memory never grows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from aiokafka.errors import KafkaError

from shared.contracts.base import Payload
from shared.decision import State
from shared.events import Event
from shared.kafka import EventPublisher
from shared.log import get_logger
from shared.owner import CommunityLog

log = get_logger(__name__)
S = TypeVar("S", bound=State)
Due = Callable[[S, datetime], list[Payload]]


async def run_timer(
    owner: CommunityLog[S],
    publisher: EventPublisher,
    topic: str,
    source: str,
    due: Due[S],
    *,
    tick_seconds: float,
    resend_seconds: float = 30.0,
) -> None:
    sent: dict[str, float] = {}  # command id -> when the broker took it
    while True:
        moment, clock = datetime.now(UTC), time.monotonic()
        still_due: dict[str, float] = {}
        for community_id, loaded in list(owner.loaded.items()):
            for command in due(loaded.state, moment):
                command_id: str = command.command_id  # type: ignore[attr-defined]
                at = sent.get(command_id)
                if at is not None and clock - at < resend_seconds:
                    still_due[command_id] = at
                    continue
                event = Event(id=command_id, source=source, community_id=community_id, data=command)
                try:
                    await publisher.publish(topic, event)
                except (KafkaError, TimeoutError) as exc:  # sent on the next tick
                    log.warning("timer.send_failed", command=command_id, error=repr(exc))
                    continue
                still_due[command_id] = clock
        sent = still_due
        await asyncio.sleep(tick_seconds)
