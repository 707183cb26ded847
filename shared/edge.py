"""The gate every request passes before any route reads it: who is calling, and how much
they may send.

A route's body is read (and validated) before its dependencies run, so a check made there
comes too late to protect the process: an unauthenticated 100 MB body would be read whole
first. Here, before routing:
- under ``/v1/`` a valid bearer token is required, else 401 with ``WWW-Authenticate``
  (the principal is kept for the route's ``CurrentPrincipal``);
- a body over its route's limit is refused with 413: at once by its Content-Length, or
  while streaming when it has none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import CHALLENGE, decode
from shared.problem import PROBLEM_JSON, Problem, problem_body

DEFAULT_BODY_LIMIT = 64 * 1024  # every JSON body of the API fits many times over
PROTECTED = "/v1/"


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        body_limits: Mapping[str, int] | None = None,
        default_limit: int = DEFAULT_BODY_LIMIT,
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        # Path patterns (regular expressions, searched) with a larger or smaller limit.
        self.limits = [(re.compile(p), n) for p, n in (body_limits or {}).items()]

    def limit_for(self, path: str) -> int:
        return next((n for p, n in self.limits if p.search(path)), self.default_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path.startswith(PROTECTED):
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                await refuse(
                    scope, receive, send, 401, "Unauthorized", "a bearer token is required"
                )
                return
            keys = getattr(scope["app"].state, "keys", None)
            if keys is None or not keys.loaded:  # still starting, or the issuer not heard yet
                await refuse(scope, receive, send, 503, "Service unavailable", "starting up")
                return
            try:
                principal = await decode(keys, token.strip())
            except Problem as exc:
                await refuse(scope, receive, send, 401, "Unauthorized", exc.detail or exc.title)
                return
            scope.setdefault("state", {})["principal"] = principal
        limit = self.limit_for(path)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await refuse(scope, receive, send, 400, "Bad request", "malformed Content-Length")
                return
            if int(declared) > limit:
                await refuse(scope, receive, send, 413, "Too large", f"at most {limit} bytes here")
                return
        await self.app(scope, _counting(receive, limit), send)


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that stops a body without Content-Length once it passes the limit."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, f"at most {limit} bytes here")
        return message

    return counted


async def refuse(
    scope: Scope, receive: Receive, send: Send, status: int, title: str, detail: str
) -> None:
    # The body is left unread: the connection closes rather than draining it.
    headers = {
        "Connection": "close",
        **(CHALLENGE if status == 401 else {}),
        **({"Retry-After": "2"} if status == 503 else {}),
    }
    response = JSONResponse(
        problem_body(scope["path"], status, title, detail),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )
    await response(scope, receive, send)
