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

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import decode
from shared.problem import Problem

DEFAULT_BODY_LIMIT = 64 * 1024  # every JSON body of the API fits many times over
PROTECTED = "/v1/"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="doorstep"'}


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
                await refuse(send, path, 401, "Unauthorized", "a bearer token is required")
                return
            secret = getattr(scope["app"].state, "jwt_secret", None)
            if secret is None:  # still starting
                await refuse(send, path, 503, "Service unavailable", "starting up")
                return
            try:
                principal = decode(secret, token.strip())
            except Problem as exc:
                await refuse(send, path, 401, "Unauthorized", exc.detail or exc.title)
                return
            scope.setdefault("state", {})["principal"] = principal
        limit = self.limit_for(path)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await refuse(send, path, 400, "Bad request", "malformed Content-Length")
                return
            if int(declared) > limit:
                await refuse(send, path, 413, "Too large", f"at most {limit} bytes here")
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


async def refuse(send: Send, path: str, status: int, title: str, detail: str) -> None:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": path,
    }
    raw = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(raw)).encode()),
    ]
    if status == 401:
        headers += [(k.lower().encode(), v.encode()) for k, v in CHALLENGE.items()]
    # The body is left unread; the connection closes rather than draining it.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
