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
