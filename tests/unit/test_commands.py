"""The HTTP side of a command (shared.commands), with a publisher that fails."""

from __future__ import annotations

from typing import Any

import pytest

from shared import commands
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
