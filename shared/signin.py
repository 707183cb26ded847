"""Signing in through the identity service, for the web front ends (the console, the
field app): they sign nobody in themselves and hold no key. A sign-in (a one-time link; or
a phone and the code texted to it) gives an access token (15 minutes) and a refresh token,
which the front ends keep in httpOnly cookies; this client asks identity for them, and
refreshes one access token once however many requests race with it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from shared.log import get_logger

log = get_logger(__name__)

ACCESS_COOKIE = "doorstep_access"
REFRESH_COOKIE = "doorstep_refresh"
SESSION_SECONDS = 12 * 3600  # how long the browser keeps the cookies
EARLY = 60  # refresh an access token this long before it expires
SHARED_FOR = 30.0  # seconds a refresh's answer is shared with requests that raced it


def set_tokens(response: Any, tokens: Tokens, *, secure: bool) -> None:
    """The session's cookies on a response: httpOnly (the page's script never sees them),
    SameSite=Lax, for ``SESSION_SECONDS``; an empty token is left as it was."""
    for name, value in ((ACCESS_COOKIE, tokens.access), (REFRESH_COOKIE, tokens.refresh)):
        if value:
            response.set_cookie(
                name,
                value,
                max_age=SESSION_SECONDS,
                httponly=True,
                samesite="lax",
                secure=secure,
            )


def client_address(request: Any) -> str:
    """The address of the person asking: uvicorn has taken it from X-Forwarded-For where
    the request came through a trusted proxy (``DOORSTEP_TRUSTED_PROXIES``)."""
    return request.client.host if request.client else "unknown"


# Why identity said no, in a word the front ends put in the person's language: (status,
# identity's title) → reason. Identity's own detail is English, for logs and developers.
REASONS = {
    (401, "Wrong code"): "code_gone",  # "code_wrong" where tries are left
    (429, "Too many codes"): "too_many_codes",
    (403, "Not registered"): "not_registered",
    (401, "Link used"): "link_gone",
    (401, "Link expired"): "link_gone",
    (401, "Signed out"): "signed_out",
    (403, "Not yours"): "not_that_person",
    (422, "Invalid request"): "bad_input",
}


class SignInRefused(Exception):
    """Identity said no: ``reason`` says why in a word (``REASONS``), with how many tries
    are left or when to ask again where it said so."""

    def __init__(
        self,
        detail: str,
        status: int = 403,
        answer: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(detail)
        answer = answer or {}
        self.status = status
        self.title: str = answer.get("title") or "Refused"
        self.tries_left: int | None = answer.get("tries_left")
        self.retry_after: int | None = answer.get("retry_after")
        reason = reason or REASONS.get((status, self.title), "refused")
        self.reason = "code_wrong" if reason == "code_gone" and self.tries_left else reason


class IdentityAway(Exception):
    """The identity service did not answer (a refresh could not be made)."""


def expires_soon(token: str) -> bool:
    try:
        exp = int(jwt.decode(token, options={"verify_signature": False}).get("exp", 0))
    except (jwt.PyJWTError, ValueError, TypeError):
        return True
    return exp - time.time() < EARLY


@dataclass
class Tokens:
    access: str
    refresh: str


class IdentityClient:
    """Asks identity for codes and tokens."""

    def __init__(self, identity_url: str) -> None:
        self.url = identity_url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=3.0))
        self._refreshing: dict[str, asyncio.Future[Tokens]] = {}

    async def close(self) -> None:
        await self._client.aclose()

    async def _ask(
        self, path: str, body: dict[str, Any], for_address: str | None = None
    ) -> dict[str, Any]:
        # Whose request it is: identity limits codes per address, and to it every request
        # comes from this front end.
        headers = {"X-Forwarded-For": for_address} if for_address else {}
        try:
            response = await self._client.post(f"{self.url}{path}", json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise IdentityAway(repr(exc)) from exc
        if response.status_code >= 500:
            raise IdentityAway(f"identity answered {response.status_code}")
        answer: dict[str, Any] = response.json()
        if response.status_code >= 400:
            detail = answer.get("detail") or answer.get("title") or "refused"
            raise SignInRefused(detail, response.status_code, answer)
        return answer

    async def _tokens(self, path: str, body: dict[str, Any]) -> Tokens:
        answer = await self._ask(path, body)
        if not answer.get("access_token"):
            raise SignInRefused("choose who to act as", 409, {"title": "Choose"})
        return Tokens(answer["access_token"], answer["refresh_token"])

    async def redeem_link(self, link: str) -> Tokens:
        return await self._tokens("/auth/link", {"link": link})

    async def send_code(self, phone: str, for_address: str | None) -> dict[str, Any]:
        """A code for the phone, asked on behalf of the person at ``for_address``."""
        return await self._ask("/auth/code", {"phone": phone}, for_address)

    async def verify(self, phone: str, code: str, identity_id: str | None) -> dict[str, Any]:
        body = {"phone": phone, "code": code}
        if identity_id:
            body["identity_id"] = identity_id
        return await self._ask("/auth/verify", body)

    async def act_as(self, refresh: str, identity_id: str) -> Tokens:
        return await self._tokens(
            "/auth/refresh", {"refresh_token": refresh, "identity_id": identity_id}
        )

    async def sign_out(self, refresh: str) -> None:
        try:
            await self._ask("/auth/sign-out", {"refresh_token": refresh})
        except (SignInRefused, IdentityAway) as exc:  # gone already, or later by expiry
            log.info("signin.sign_out_not_confirmed", reason=str(exc))

    async def refresh(self, refresh: str) -> Tokens:
        """The next tokens; requests that race with the same refresh token share one."""
        waiting = self._refreshing.get(refresh)
        if waiting is not None:
            return await asyncio.shield(waiting)
        future: asyncio.Future[Tokens] = asyncio.get_running_loop().create_future()
        self._refreshing[refresh] = future
        try:
            tokens = await self._tokens("/auth/refresh", {"refresh_token": refresh})
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            del self._refreshing[refresh]
            raise
        future.set_result(tokens)
        asyncio.get_running_loop().call_later(
            SHARED_FOR, lambda: self._refreshing.pop(refresh, None)
        )
        return tokens
