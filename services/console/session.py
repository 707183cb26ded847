"""Who is signed in to the console, and the tokens it calls the services with.

The console signs nobody in itself and holds no key: the identity service does. A sign-in
(a one-time link, ``make console-link``; or a phone and the code texted to it) gives an
access token (15 minutes) and a refresh token, kept in two httpOnly, SameSite=Lax cookies;
the browser's script never sees them. Each request reads who it is from the access token,
checked with identity's published keys like every service checks it, and calls the
services with that same token, so they enforce the person's role and grid themselves.
An access token about to expire is refreshed at identity first (one refresh per token:
requests racing with the same cookie share the answer, as a refresh token works once).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import jwt

from shared.auth import Principal, Role, decode, mint_link
from shared.contracts.identity import Identity
from shared.keys import KeyRing, SigningKey
from shared.log import get_logger
from shared.problem import Problem

log = get_logger(__name__)

ACCESS_COOKIE = "doorstep_access"
REFRESH_COOKIE = "doorstep_refresh"
SESSION_SECONDS = 12 * 3600  # how long the browser keeps the cookies
EARLY = 60  # refresh an access token this long before it expires
SHARED_FOR = 30.0  # seconds a refresh's answer is shared with requests that raced it


class SignInRefused(Exception):
    pass


class IdentityAway(Exception):
    """The identity service did not answer (a refresh could not be made)."""


@dataclass(frozen=True)
class Person:
    """Staff of one community; a grid worker: staff scoped to one grid; or ops: staff of
    whichever community they open (they may open any). ``token``: what calls carry."""

    name: str
    community_id: str
    grid_id: str | None = None
    ops: bool = False
    token: str = field(default="", repr=False, compare=False)

    @property
    def role(self) -> str:
        return "ops" if self.ops else "grid_worker" if self.grid_id else "staff"

    def sees_grid(self, grid_id: str | None) -> bool:
        return self.grid_id is None or grid_id == self.grid_id

    def opening(self, community_id: str) -> Person:
        return replace(self, community_id=community_id)


def person_of(principal: Principal, token: str) -> Person:
    if principal.role not in (Role.staff, Role.grid_worker) or principal.community_id is None:
        raise SignInRefused("the console is for staff, grid workers and ops")
    return Person(
        principal.name or principal.subject,
        principal.community_id,
        principal.grid_id,
        principal.ops,
        token,
    )


def link_identity(name: str, community_id: str, grid_id: str | None) -> dict[str, Any]:
    if grid_id:
        return Identity.of("grid_worker", community_id, grid_id, name=name).model_dump()
    return Identity.of("staff", community_id, name=name).model_dump()


def sign_in_link(
    key: SigningKey,
    base_url: str,
    name: str,
    community_id: str,
    grid_id: str | None = None,
    ops: bool = False,
) -> str:
    """A one-time link (15 minutes) for the person named; whoever holds the issuer's key
    may make one (development; ops with the key in an emergency)."""
    token = mint_link(key, link_identity(name, community_id, grid_id), ops=ops)
    return f"{base_url.rstrip('/')}/signin?t={token}"


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


class Sessions:
    """The console's side of sign-in: asks identity, checks what it gets back."""

    def __init__(self, identity_url: str, keys: KeyRing) -> None:
        self.url = identity_url.rstrip("/")
        self.keys = keys
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=3.0))
        self._refreshing: dict[str, asyncio.Future[Tokens]] = {}

    async def close(self) -> None:
        await self._client.aclose()

    async def _ask(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(f"{self.url}{path}", json=body)
        except httpx.HTTPError as exc:
            raise IdentityAway(repr(exc)) from exc
        if response.status_code >= 500:
            raise IdentityAway(f"identity answered {response.status_code}")
        answer: dict[str, Any] = response.json()
        if response.status_code >= 400:
            raise SignInRefused(answer.get("detail") or answer.get("title") or "refused")
        return answer

    async def _tokens(self, path: str, body: dict[str, Any]) -> Tokens:
        answer = await self._ask(path, body)
        if not answer.get("access_token"):
            raise SignInRefused("choose who to act as")
        return Tokens(answer["access_token"], answer["refresh_token"])

    async def redeem_link(self, link: str) -> Tokens:
        return await self._tokens("/auth/link", {"link": link})

    async def send_code(self, phone: str) -> dict[str, Any]:
        return await self._ask("/auth/code", {"phone": phone})

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
            log.info("console.sign_out_not_confirmed", reason=str(exc))

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

    async def current(
        self, access: str | None, refresh: str | None
    ) -> tuple[Person, Tokens | None]:
        """Who the cookies say is signed in, and new tokens if they had to be refreshed."""
        if access and not expires_soon(access):
            try:
                return person_of(await decode(self.keys, access), access), None
            except Problem:
                pass  # not valid (a key retired, tampered): the refresh token decides
        if not refresh:
            raise SignInRefused("not signed in")
        tokens = await self.refresh(refresh)
        try:
            principal = await decode(self.keys, tokens.access)
        except Problem as exc:
            raise SignInRefused(str(exc)) from exc
        return person_of(principal, tokens.access), tokens

    async def person(self, tokens: Tokens) -> Person:
        try:
            return person_of(await decode(self.keys, tokens.access), tokens.access)
        except Problem as exc:
            raise SignInRefused(str(exc)) from exc
