"""The HTTP side of a command (shared.commands), with a publisher that fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from shared import commands, trace
from shared.commands import CommandSender, new_command_id
from shared.contracts import orders as o


class Refusing:
    """A publisher whose broker refuses the record (not a timeout)."""

    async def publish(self, topic: str, event: Any) -> None:
        raise RuntimeError("the broker refused the record")


class Db(dict[str, Any]):
    def __missing__(self, name: str) -> object:
        return object()


async def test_a_command_the_broker_refuses_leaves_no_request_waiting_for_ever() -> None:
    sender = CommandSender(Db(), Refusing(), "orders.commands", "/tests")  # type: ignore[arg-type]
    command = o.ReviewOrder(command_id=new_command_id(), actor="s", order_id="o")
    with pytest.raises(RuntimeError):
        await sender.send("datong", command)
    assert command.command_id not in commands._waiting


class Taking:
    """A publisher whose broker takes the record at once."""

    async def publish(self, topic: str, event: Any) -> None:
        return None


class SlowResults:
    """The results collection of a slow database: while the request looks in it (its
    wait over), the owner in this process decides the command."""

    def __init__(self, command_id: str) -> None:
        self.command_id = command_id
        self.stored: dict[str, Any] = {}

    async def find_one(self, query: dict[str, Any]) -> dict[str, Any] | None:
        decided = commands.Outcome.ok({"order_id": "o"})
        if not commands.hand_over(self.command_id, decided):  # nobody waits: stored
            self.stored[self.command_id] = decided
        return None

    async def insert_one(self, doc: dict[str, Any]) -> None:
        return None


async def test_an_outcome_decided_while_a_request_gives_up_waiting_is_kept_for_its_link() -> None:
    command = o.ReviewOrder(command_id=new_command_id(), actor="s", order_id="o")
    results = SlowResults(command.command_id)
    sender = CommandSender(
        Db(command_results=results, commands_queued=results),
        Taking(),  # type: ignore[arg-type]
        "orders.commands",
        "/tests",
    )
    answer = await sender.send("datong", command, wait_seconds=0.01)
    # Either the request answered with it, or it was stored for GET /v1/commands/{id}:
    # never handed to a request that had already given up.
    assert answer.status == 200 or command.command_id in results.stored


class Buffering:
    """A publisher as aiokafka's is: the record is in the producer's buffer at once and
    goes out whatever happens to the request; the broker's acknowledgement comes later,
    or never."""

    def __init__(self) -> None:
        self.buffered: list[Any] = []
        self.acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def publish(self, topic: str, event: Any) -> None:
        self.buffered.append(event)
        await self.acked


class Kept:
    """An insert-once collection in memory."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    async def insert_one(self, doc: dict[str, Any]) -> None:
        if doc["_id"] in self.docs:
            raise DuplicateKeyError("E11000 duplicate key")
        self.docs[doc["_id"]] = doc

    async def find_one(self, query: dict[str, Any], *_: Any) -> dict[str, Any] | None:
        return self.docs.get(query["_id"])


async def test_a_command_whose_publish_outlasts_the_wait_answers_202_with_its_link_not_503() -> (
    None
):
    publisher = Buffering()
    results, queued = Kept(), Kept()
    sender = CommandSender(
        Db(command_results=results, commands_queued=queued),
        publisher,  # type: ignore[arg-type]
        "orders.commands",
        "/tests",
        wait_seconds=0.05,
    )
    command = o.ReviewOrder(command_id=new_command_id(), actor="s", order_id="o")
    answer = await sender.send("datong", command)
    # The record is in the producer's buffer and may still reach the owner: a 503 would
    # tell the client to send it again, and a retry would be decided twice.
    assert len(publisher.buffered) == 1
    assert answer.status == 202, answer
    assert answer.body == {
        "command_id": command.command_id,
        "status": "queued",
        "outcome": f"/v1/commands/{command.command_id}",
    }
    assert queued.docs[command.command_id]["actor"] == "s"  # its sender may look it up
    assert command.command_id not in commands._waiting

    # The broker never took it: the link says so, and that sending it again is safe.
    publisher.acked.set_exception(TimeoutError("batch expired"))
    for _ in range(20):
        await asyncio.sleep(0)
    stored = await commands.stored_outcome_of(results, command.command_id)  # type: ignore[arg-type]
    assert stored is not None and stored.status == 503
    assert "send it again" in (stored.detail or "")


class Keeping:
    """A publisher that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def publish(self, topic: str, event: Any) -> None:
        self.events.append(event)


async def test_a_command_carries_the_correlation_id_of_the_request_that_sent_it() -> None:
    publisher = Keeping()
    sender = CommandSender(
        Db(command_results=Kept(), commands_queued=Kept()),
        publisher,  # type: ignore[arg-type]
        "orders.commands",
        "/tests",
    )
    trace.begin("4bf92f3577b34da6a3ce929d0e0e4736")  # as the request's middleware does
    command = o.ReviewOrder(command_id=new_command_id(), actor="s", order_id="o")
    await sender.send("datong", command, wait_seconds=0.01)
    assert publisher.events[0].correlation_id == "4bf92f3577b34da6a3ce929d0e0e4736"
