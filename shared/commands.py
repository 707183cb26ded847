"""Commands: how an HTTP request reaches the one instance that may write a community.

FerretDB v1 has no transactions and no atomic read-modify-write, so every service keeps
one writer per community: the consumer instance that owns the community's partition. An
HTTP route validates and authorises, then ``send``s a command keyed by community to its
service's command topic and waits for the owner's outcome: handed over in-process when
the owner is this instance, through ``commands.outcomes`` when it is another, and kept in
``command_results`` (insert-once, by command id) for a request that answered 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared import trace
from shared.auth import CurrentPrincipal
from shared.contracts.base import Payload
from shared.events import Event
from shared.kafka import EventPublisher
from shared.log import get_logger
from shared.outcome import Outcome
from shared.problem import Problem
from shared.topics import OUTCOMES

log = get_logger(__name__)

RESULTS = "command_results"
QUEUED = "commands_queued"  # commands answered 202, and who sent them

# Requests waiting in this process, by command id: the owner hands an outcome over
# directly when it is this process, through ``commands.outcomes`` when it is another.
_waiting: dict[str, asyncio.Future[Outcome]] = {}
# Publishes that outlasted their request, followed until the broker takes or refuses them.
_following: set[asyncio.Task[None]] = set()


def new_command_id() -> str:
    return uuid.uuid4().hex


class CommandSender:
    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        publisher: EventPublisher,
        topic: str,
        source: str,
        wait_seconds: float = 15.0,
    ) -> None:
        self._results = db[RESULTS]
        self._queued = db[QUEUED]
        self._publisher = publisher
        self._topic = topic
        self._source = source
        self._wait = wait_seconds

    async def send(
        self,
        community_id: str,
        command: Payload,
        correlation_id: str | None = None,
        wait_seconds: float | None = None,
    ) -> Outcome:
        command_id: str = command.command_id  # type: ignore[attr-defined]
        correlation_id = correlation_id or trace.current()  # the request's, when it sends
        local = _waiting.setdefault(command_id, asyncio.get_running_loop().create_future())
        event = Event(
            id=command_id,
            source=self._source,
            community_id=community_id,
            correlation_id=correlation_id,
            data=command,
        )
        publishing = asyncio.ensure_future(self._publisher.publish(self._topic, event))
        try:
            await asyncio.wait_for(asyncio.shield(publishing), self._wait)
        except TimeoutError:
            # Not a 503: the record is in the producer's buffer and may still reach the
            # owner, and a client told to retry would have it decided twice. 202 with its
            # link; if the broker never takes it, the link says so (safe to send again).
            _waiting.pop(command_id, None)
            _following.add(task := asyncio.create_task(self._not_sent(publishing, command_id)))
            task.add_done_callback(_following.discard)
            outcome = queued(command_id)
        except BaseException:  # refused, cancelled: nobody will wait for this outcome
            _waiting.pop(command_id, None)
            publishing.cancel()
            raise
        else:
            outcome = await self.outcome(command_id, local, wait_seconds)
        if outcome.status == 202:
            # Whose it is, for GET /v1/commands/{id}: only its sender may look it up.
            with contextlib.suppress(DuplicateKeyError):
                await self._queued.insert_one(
                    {
                        "_id": command_id,
                        # Staff and residents act as themselves; a volunteer's answers
                        # name the volunteer.
                        "actor": getattr(command, "actor", None)
                        or getattr(command, "volunteer_id", None),
                        "at": datetime.now(UTC),
                    }
                )
        return outcome

    async def _not_sent(self, publishing: asyncio.Future[None], command_id: str) -> None:
        """A publish that outlasted its request: if the broker finally refuses it, its
        link answers 503 (nothing was done). Insert-once: an outcome the owner stored
        first (the record did go out) stays."""
        try:
            await publishing
            return
        except Exception as exc:  # whatever it was, the command was not sent
            log.warning("command.not_sent", command_id=command_id, error=repr(exc)[:200])
        not_sent = Outcome.rejected(
            503,
            "Service unavailable",
            "the event broker did not take the request: nothing was done; send it again",
        )
        try:
            await self._results.insert_one({"_id": command_id, "outcome": not_sent.model_dump()})
        except DuplicateKeyError:
            pass
        except Exception as exc:  # the database away too: the link stays "queued"
            log.warning("command.not_sent_unrecorded", command_id=command_id, error=repr(exc)[:200])

    async def outcome(
        self,
        command_id: str,
        local: asyncio.Future[Outcome] | None = None,
        wait_seconds: float | None = None,
    ) -> Outcome:
        local = local or _waiting.setdefault(command_id, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(local), wait_seconds or self._wait)
        except TimeoutError:
            # No longer waiting, before anything else: an outcome decided from now on is
            # stored for its link, not handed to a request that has given up.
            _waiting.pop(command_id, None)
            if local.done() and not local.cancelled():
                # Handed over just as the wait ran out: the owner stored it nowhere else.
                return local.result()
            # One look in the store: decided while nobody here listened (a restart).
            stored = await stored_outcome_of(self._results, command_id)
            if stored is not None:
                return stored
        finally:
            _waiting.pop(command_id, None)
        # Accepted and queued; the owner will still apply it. The caller can look later.
        return queued(command_id)


def queued(command_id: str) -> Outcome:
    return Outcome(
        status=202,
        body={
            "command_id": command_id,
            "status": "queued",
            "outcome": f"/v1/commands/{command_id}",
        },
    )


class OutcomeBoard:
    """Owner side: where decided outcomes meet the requests waiting for them. Handed
    straight to a request waiting in this process, and then that is all: the request
    answers with it, nobody else waits for it (a command has one sender). Any other is
    published on ``commands.outcomes`` for a request waiting on another instance (every
    instance listens, nobody polls the database) and stored once per command id for
    ``GET /v1/commands/{id}`` and for a request that gave up waiting (a redo keeps the
    first). With one instance the usual outcome costs no write and no message."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], publisher: EventPublisher) -> None:
        self._results = db[RESULTS]
        self._publisher = publisher

    async def record(self, community_id: str, outcomes: dict[str, Outcome]) -> None:
        outcomes = {cid: o for cid, o in outcomes.items() if not hand_over(cid, o)}
        if not outcomes:
            return
        docs = [{"_id": cid, "outcome": o.model_dump()} for cid, o in outcomes.items()]
        with contextlib.suppress(BulkWriteError):  # stored before: a redo after a crash
            await self._results.insert_many(docs, ordered=False)
        await self._publisher.publish_raw_many(
            OUTCOMES,
            [
                (
                    community_id.encode(),
                    json.dumps({"command_id": cid, "outcome": d["outcome"]}).encode(),
                )
                for cid, d in zip(outcomes, docs, strict=True)
            ],
        )


def hand_over(command_id: str, outcome: Outcome) -> bool:
    """True when a request waiting here took the outcome (it will answer with it)."""
    waiter = _waiting.get(command_id)
    if waiter is not None and not waiter.done():
        waiter.set_result(outcome)
        return True
    return False


async def listen_for_outcomes(bootstrap: str) -> None:
    """Hand outcomes decided on other instances to the requests waiting here. Reads from
    the end (an outcome decided before a request waits is found in ``command_results``)."""
    consumer = AIOKafkaConsumer(
        OUTCOMES, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        async for record in consumer:
            if not _waiting:
                continue
            try:
                reply = json.loads(record.value or b"")
                hand_over(reply["command_id"], Outcome.model_validate(reply["outcome"]))
            except (ValueError, KeyError, TypeError):
                continue  # not an outcome of ours; nothing waits on it
    finally:
        await consumer.stop()


async def stored_outcome(db: AsyncDatabase[dict[str, Any]], command_id: str) -> Outcome | None:
    return await stored_outcome_of(db[RESULTS], command_id)


async def stored_outcome_of(
    results: AsyncCollection[dict[str, Any]], command_id: str
) -> Outcome | None:
    doc = await results.find_one({"_id": command_id})
    return None if doc is None else Outcome.model_validate(doc["outcome"])


def commands_router() -> APIRouter:
    """GET /v1/commands/{id}: the outcome of a command that was still queued when its
    request answered 202, for the one who sent it (404 to anyone else, and for ids that
    never answered 202)."""
    router = APIRouter(prefix="/v1", tags=["commands"])

    @router.get("/commands/{command_id}", summary="The outcome of a queued request")
    async def command_outcome(
        command_id: str, request: Request, principal: CurrentPrincipal
    ) -> JSONResponse:
        db = request.app.state.runtime.db
        queued = await db[QUEUED].find_one({"_id": command_id})
        mine = {principal.subject, principal.volunteer_id} - {None}
        if queued is None or queued["actor"] not in mine:
            raise Problem(404, "Not found", "no queued request of yours with this id")
        outcome = await stored_outcome(db, command_id)
        if outcome is None:
            return JSONResponse({"command_id": command_id, "status": "queued"}, status_code=202)
        return JSONResponse(outcome.unwrap(), status_code=outcome.status)

    return router
