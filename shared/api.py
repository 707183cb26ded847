"""What every service's routes depend on: the database, the command sender, the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from pymongo.asynchronous.database import AsyncDatabase

from shared.commands import CommandSender, Outcome


async def database(request: Request) -> AsyncDatabase[dict[str, Any]]:
    return request.app.state.runtime.db  # type: ignore[no-any-return]


async def command_sender(request: Request) -> CommandSender:
    return request.app.state.commands  # type: ignore[no-any-return]


Db = Annotated[AsyncDatabase[dict[str, Any]], Depends(database)]
Commands = Annotated[CommandSender, Depends(command_sender)]


def answer(outcome: Outcome) -> JSONResponse:
    """The owner's outcome as the HTTP answer (a rejection becomes problem details)."""
    return JSONResponse(outcome.unwrap(), status_code=outcome.status)


class StrictBody(BaseModel):
    """Request bodies: unknown fields are refused, text is trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
