"""The dispatch owner: the one writer of the boards of the communities on its partitions.

Every input — an order or volunteer fact, a volunteer's answer, the owner's own offer
timer — is applied to the community's in-memory board; the new board and the events it
decided are stored in one single-document write (the outbox inside the write), then
published. The board remembers the ids it applied, so a re-delivered input only flushes
what was left unpublished.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.dispatch.board import Board, Rejection
from shared import outbox
from shared.commands import Outcome, record_outcome, stored_outcome
from shared.contracts import dispatch as d
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.contracts.base import Payload
from shared.events import Event
from shared.kafka import EventPublisher, PartitionListener
from shared.log import get_logger
from shared.topics import DISPATCH_COMMANDS, DISPATCH_EVENTS

log = get_logger(__name__)
SOURCE = "/dispatch"


class StaleBoard(RuntimeError):
    """Another owner stored this decision first; reload and try again."""


def partition_of(community_id: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key), as the producers use it."""
    return (murmur2(community_id.encode()) & 0x7FFFFFFF) % partitions


def now() -> datetime:
    return datetime.now(UTC)


class DispatchOwner(PartitionListener):
    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        publisher: EventPublisher,
        *,
        partitions: int,
        offer_timeout_seconds: float,
        escalate_after_seconds: float,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.collection = db["boards"]
        self.partitions = partitions
        self.offer_timeout = offer_timeout_seconds
        self.escalate_after = escalate_after_seconds
        self.boards: dict[str, Board] = {}
        self.owned: set[int] = set()
        self._expiries_sent: set[tuple[str, int]] = set()

    @property
    def table(self) -> dict[type[Any], Callable[[Event], Awaitable[None]]]:
        return {
            o.CommunityDefined: self.fact(lambda b, p, t: b.define(p.grids, t)),
            o.OrderAccepted: self.fact(lambda b, p, t: b.order_open(p.order, t)),
            o.OrderReopened: self.fact(lambda b, p, t: b.order_open(p.order, t)),
            o.OrderCancelled: self.fact(lambda b, p, t: b.order_cancelled(p.order_id, t)),
            o.OrderPriorityChanged: self.fact(
                lambda b, p, t: b.priority_changed(p.order_id, p.priority, t)
            ),
            v.VolunteerApproved: self.fact(
                lambda b, p, t: b.volunteer_approved(
                    p.volunteer_id, p.name, p.skills, p.capacity, t
                )
            ),
            v.ShiftStarted: self.fact(
                lambda b, p, t: b.shift_started(p.volunteer_id, p.shift_id, p.grid_id, t)
            ),
            v.ShiftEnded: self.fact(lambda b, p, t: b.shift_ended(p.volunteer_id, p.shift_id, t)),
            d.AcceptOffer: self.command(lambda b, p, t: b.accept(p.order_id, p.volunteer_id, t)),
            d.DeclineOffer: self.command(lambda b, p, t: b.decline(p.order_id, p.volunteer_id, t)),
            d.PickUp: self.command(lambda b, p, t: b.pick_up(p.order_id, p.volunteer_id, t)),
            d.Deliver: self.command(
                lambda b, p, t: b.deliver(
                    p.order_id, p.volunteer_id, p.handoff_code, p.photo_url, t
                )
            ),
            d.ReportFailure: self.command(
                lambda b, p, t: b.fail(p.order_id, p.volunteer_id, p.reason, p.note, t)
            ),
            d.EscalateLateOrder: self.fact(lambda b, p, t: b.escalate_late(p.order_id, t)),
            d.ExpireOffer: self.fact(
                lambda b, p, t: b.expire(p.order_id, p.volunteer_id, p.attempt, t)
            ),
        }

    # --- ownership -------------------------------------------------------------------------

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.owned = {tp.partition for tp in assigned}
        # Load the boards of the communities now ours, so their offer timers re-arm.
        async for doc in self.collection.find({}, {"_id": 1}):
            if partition_of(doc["_id"], self.partitions) in self.owned:
                await self.board(doc["_id"])
        log.info("dispatch.assigned", partitions=sorted(self.owned), boards=len(self.boards))

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # State is never trusted across owners: the next owner reloads it from the database.
        self.boards.clear()
        self._expiries_sent.clear()
        self.owned = set()

    async def board(self, community_id: str) -> Board:
        board = self.boards.get(community_id)
        if board is None:
            doc = await self.collection.find_one({"_id": community_id})
            if doc is None:
                board = Board(community_id=community_id)
            else:
                board = Board.model_validate(doc["board"])
                # Its last decision's events may not have gone out before a crash: send
                # them (again); they keep their ids, so consumers drop any repeats.
                pending = [Event.model_validate(e) for e in doc.get("outbox") or []]
                if pending:
                    await self.publisher.publish_many(DISPATCH_EVENTS, pending)
            board.offer_timeout_seconds = self.offer_timeout
            board.escalate_after_seconds = self.escalate_after
            self.boards[community_id] = board
        return board

    # --- applying inputs -------------------------------------------------------------------

    def fact(
        self, decide: Callable[[Board, Any, datetime], list[Payload]]
    ) -> Callable[[Event], Awaitable[None]]:
        async def handle(event: Event) -> None:
            board = await self.board(event.community_id)
            if board.seen(event.id):
                return
            async with self._deciding(board):
                payloads = decide(board, event.data, now())
                await self._store(board, event, payloads)

        return handle

    def command(
        self, decide: Callable[[Board, Any, datetime], list[Payload]]
    ) -> Callable[[Event], Awaitable[None]]:
        async def handle(event: Event) -> None:
            command_id = event.data.command_id  # type: ignore[union-attr]
            board = await self.board(event.community_id)
            if board.seen(event.id):  # applied before a crash; answer if not yet answered
                if await stored_outcome(self.db, command_id) is None:
                    await record_outcome(self.db, command_id, Outcome.ok(self._state(board, event)))
                return
            async with self._deciding(board):
                try:
                    payloads = decide(board, event.data, now())
                except Rejection as rejection:  # refused before anything changed
                    await record_outcome(
                        self.db,
                        command_id,
                        Outcome.rejected(rejection.status, "Rejected", rejection.reason),
                    )
                    return
                await self._store(board, event, payloads)
            await record_outcome(self.db, command_id, Outcome.ok(self._state(board, event)))

        return handle

    @staticmethod
    def _state(board: Board, event: Event) -> dict[str, Any]:
        order_id: str = event.data.order_id  # type: ignore[union-attr]
        task = board.tasks.get(order_id)
        return {"order_id": order_id, "state": task.state.value if task else "closed"}

    @contextlib.asynccontextmanager
    async def _deciding(self, board: Board) -> AsyncIterator[None]:
        """A decision changes the board in memory before it is stored: if storing fails,
        forget the board, so the retried input meets the stored one, not a half-decided one."""
        try:
            yield
        except BaseException:
            self.boards.pop(board.community_id, None)
            raise

    async def _store(self, board: Board, cause: Event, payloads: list[Payload]) -> None:
        board.remember(cause.id)
        board.seq += 1
        try:
            # The fence: decision n of a community can be stored once. An owner that lost
            # its partition but has not noticed yet (a zombie) fails here instead of
            # overwriting the new owner's board.
            await self.db["decisions"].insert_one(
                {"_id": f"{board.community_id}:{board.seq}", "input": cause.id, "at": now()}
            )
        except DuplicateKeyError as exc:
            raise StaleBoard(f"decision {board.seq} of {board.community_id} was taken") from exc
        events = [
            cause.follow_up(
                SOURCE,
                p,
                salt=str(i),
                subject=f"order/{p.order.order_id}" if hasattr(p, "order") else None,
            )
            for i, p in enumerate(payloads)
        ]
        await self.collection.replace_one(
            {"_id": board.community_id},
            {"board": board.model_dump(mode="json"), "outbox": outbox.entries(*events)},
            upsert=True,
        )
        # Published, but not cleared: the next decision's write replaces the outbox anyway,
        # and a board loaded after a crash re-publishes its last outbox (same event ids, so
        # consumers drop the copies). One write per decision instead of two.
        if events:
            await self.publisher.publish_many(DISPATCH_EVENTS, events)

    # --- the offer timer -------------------------------------------------------------------

    async def expire_offers(self, tick_seconds: float = 0.5) -> None:
        """Turn lapsed offers (and orders not taken in time) into commands on the
        community's own partition, so they are ordered with the volunteers' answers and
        applied by the owner."""
        while True:
            moment = now()
            for board in list(self.boards.values()):
                for task in board.late_orders(moment):
                    key = (task.order.order_id, -1)
                    if key in self._expiries_sent:
                        continue
                    self._expiries_sent.add(key)
                    await self._to_owner(
                        board,
                        d.EscalateLateOrder(
                            command_id=f"late-{task.order.order_id}", order_id=task.order.order_id
                        ),
                    )
                for task in board.due_offers(moment):
                    key = (task.order.order_id, task.attempt)
                    if key in self._expiries_sent or task.volunteer_id is None:
                        continue
                    self._expiries_sent.add(key)
                    await self._to_owner(
                        board,
                        d.ExpireOffer(
                            command_id=f"expire-{task.order.order_id}-{task.attempt}",
                            order_id=task.order.order_id,
                            volunteer_id=task.volunteer_id,
                            attempt=task.attempt,
                        ),
                    )
            await asyncio.sleep(tick_seconds)

    async def _to_owner(self, board: Board, command: Payload) -> None:
        """A command on the community's own partition (the id is fixed: sent twice, it is
        applied once)."""
        command_id: str = command.command_id  # type: ignore[attr-defined]
        event = Event(id=command_id, source=SOURCE, community_id=board.community_id, data=command)
        await self.publisher.publish(DISPATCH_COMMANDS, event)
