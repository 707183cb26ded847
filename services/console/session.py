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

from dataclasses import dataclass, field, replace
from typing import Any

from shared.auth import Principal, Role, decode, mint_link
from shared.contracts.identity import Identity
from shared.keys import KeyRing, SigningKey
from shared.problem import Problem
from shared.signin import (
    ACCESS_COOKIE,
    REFRESH_COOKIE,
    SESSION_SECONDS,
    IdentityAway,
    IdentityClient,
    SignInRefused,
    Tokens,
    expires_soon,
)

__all__ = [
    "ACCESS_COOKIE",
    "REFRESH_COOKIE",
    "SESSION_SECONDS",
    "IdentityAway",
    "Person",
    "Sessions",
    "SignInRefused",
    "Tokens",
    "sign_in_link",
]


@dataclass(frozen=True)
class Person:
    """Staff of one community; a grid worker: staff scoped to one grid; or ops: staff of
    whichever community they open (they may open any). ``token``: what calls carry."""

    name: str
    community_id: str
    grid_id: str | None = None
    ops: bool = False
    token: str = field(default="", repr=False, compare=False)
    sub_district: str | None = None  # an officer of a 街道: its view only, no community

    @property
    def role(self) -> str:
        if self.sub_district:
            return "sub_district"
        return "ops" if self.ops else "grid_worker" if self.grid_id else "staff"

    def sees_grid(self, grid_id: str | None) -> bool:
        return self.grid_id is None or grid_id == self.grid_id

    def opening(self, community_id: str) -> Person:
        return replace(self, community_id=community_id)


def person_of(principal: Principal, token: str) -> Person:
    if principal.role is Role.sub_district and principal.sub_district:
        name = principal.name or principal.subject
        return Person(name, "", token=token, sub_district=principal.sub_district)
    if principal.role not in (Role.staff, Role.grid_worker) or principal.community_id is None:
        raise SignInRefused(
            "the console is for staff, grid workers, sub-districts and ops", reason="not_office"
        )
    return Person(
        principal.name or principal.subject,
        principal.community_id,
        principal.grid_id,
        principal.ops,
        token,
    )


def link_identity(
    name: str, community_id: str | None, grid_id: str | None, sub_district: str | None = None
) -> dict[str, Any]:
    if sub_district:
        return Identity.of("sub_district", ref=sub_district, name=name).model_dump()
    if grid_id:
        return Identity.of("grid_worker", community_id, grid_id, name=name).model_dump()
    return Identity.of("staff", community_id, name=name).model_dump()


def sign_in_link(
    key: SigningKey,
    base_url: str,
    name: str,
    community_id: str | None,
    grid_id: str | None = None,
    ops: bool = False,
    sub_district: str | None = None,
) -> str:
    """A one-time link (15 minutes) for the person named; whoever holds the issuer's key
    may make one (development; ops with the key in an emergency)."""
    token = mint_link(key, link_identity(name, community_id, grid_id, sub_district), ops=ops)
    return f"{base_url.rstrip('/')}/signin?t={token}"


class Sessions(IdentityClient):
    """The console's side of sign-in: asks identity, checks what it gets back."""

    def __init__(self, identity_url: str, keys: KeyRing) -> None:
        super().__init__(identity_url)
        self.keys = keys

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
