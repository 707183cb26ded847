"""What every service's routes depend on: the database, the command sender, the answer."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import Depends, Header, Request
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


# A client's retry of a request that opens something (an order, a parcel) after a timeout:
# the same key is the same thing, the key with another body is refused (422).
IdempotencyKey = Annotated[
    str | None,
    Header(max_length=100, pattern=r"^[\x21-\x7e]+$", description="A retry is the same request"),
]


def request_hash(body: BaseModel) -> str:
    return hashlib.sha256(
        json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()
