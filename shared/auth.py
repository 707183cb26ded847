"""Bearer JWT (EdDSA, PyJWT) with role claims, and the FastAPI dependencies that check them.

Tokens are signed by the identity service alone (``shared.keys``: its private keys never
leave it); every service checks them with the public keys it publishes. Roles and their
scope claims:
- ``resident``    — ``community`` and ``household``: their own household's orders and inbox;
- ``volunteer``   — ``community`` and ``volunteer``: their own registration, offers, tasks;
- ``grid_worker`` — ``community`` and ``grid``: staff's work, for that one grid;
- ``staff``       — ``community``: everything of that one community;
- ``sub_district`` — ``district``: the 街道's view of its communities (read only);
- ``ops``         — no scope: creates communities, sees everything.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from shared.keys import ALGORITHM, KeyRing, SigningKey
from shared.problem import Problem

ISSUER = "doorstep"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="doorstep"'}  # on every 401
ACCESS_SECONDS = 15 * 60  # what sign-in gives; a refresh token gets the next one


class Role(StrEnum):
    resident = "resident"
    volunteer = "volunteer"
    grid_worker = "grid_worker"
    staff = "staff"
    sub_district = "sub_district"
    ops = "ops"


class Principal(BaseModel):
    subject: str
    role: Role
    community_id: str | None = None
    household_id: str | None = None
    volunteer_id: str | None = None
    grid_id: str | None = None  # a grid worker's grid
    sub_district: str | None = None  # a sub-district officer's 街道
    name: str | None = None  # who, in words (staff and grid workers)
    ops: bool = False  # ops acting as staff of a community they opened
    account: str | None = None  # the signed-in phone (or link) the token was issued to
    session_id: str | None = None  # the sign-in session it came from

    def may_see_community(self, community_id: str) -> bool:
        return self.role is Role.ops or self.community_id == community_id

    def sees_grid(self, grid_id: str | None) -> bool:
        """Staff see every grid of their community; a grid worker only their own."""
        return self.role is not Role.grid_worker or grid_id == self.grid_id

    @property
    def recipient(self) -> str:
        """The notify inbox this principal reads."""
        if self.role is Role.resident:
            return f"household:{self.household_id}"
        if self.role is Role.volunteer:
            return f"volunteer:{self.volunteer_id}"
        if self.role is Role.grid_worker:
            return f"grid_worker:{self.community_id}:{self.grid_id}"
        if self.role is Role.staff:
            return f"staff:{self.community_id}"
        if self.role is Role.sub_district:
            return f"sub_district:{self.sub_district}"
        return "ops"


def claims_of(
    *,
    role: Role,
    subject: str,
    community_id: str | None = None,
    household_id: str | None = None,
    volunteer_id: str | None = None,
    grid_id: str | None = None,
    sub_district: str | None = None,
    name: str | None = None,
    ops: bool = False,
    ttl_seconds: int = ACCESS_SECONDS,
    now: float | None = None,
) -> dict[str, object]:
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "sub": subject,
        "role": role.value,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    scope = {
        "community": community_id,
        "household": household_id,
        "volunteer": volunteer_id,
        "grid": grid_id,
        "district": sub_district,
        "name": name,
    }
    claims |= {k: v for k, v in scope.items() if v}
    if ops:
        claims["ops"] = True
    return claims


def mint(key: SigningKey, **claims: Any) -> str:
    """An access token signed with the issuer's key (the identity service; ``make token``
    and the tests, which hold a development key); ``claims`` as ``claims_of`` takes them."""
    return key.sign(claims_of(**claims))


LINK_AUDIENCE = "doorstep-sign-in-link"
LINK_SECONDS = 15 * 60


def mint_link(key: SigningKey, identity: dict[str, Any], *, ops: bool = False) -> str:
    """A one-time sign-in link's token (``make console-link``): whoever holds the issuer's
    key may name who signs in; the identity service turns it into a session, once."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": LINK_AUDIENCE,
        "sub": identity.get("name") or identity["identity_id"],
        "identity": identity,
        "ops": ops,
        "iat": now,
        "exp": now + LINK_SECONDS,
        "jti": uuid.uuid4().hex,
    }
    return key.sign(claims)


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, kind="unauthorized", headers=CHALLENGE)


async def verified_claims(
    keys: KeyRing, token: str, *, audience: str | None = None
) -> dict[str, Any]:
    """A token's claims, if one of the issuer's keys signed it (asymmetric only: a token
    signed with a shared secret, or with no signature, is refused). The one decoder: access
    tokens and sign-in links alike."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _unauthorized(f"invalid token: {exc}") from exc
    if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
        raise _unauthorized(f"invalid token: only {ALGORITHM} tokens with a kid are accepted")
    key = await keys.learn(header["kid"])
    if key is None:
        raise _unauthorized("invalid token: signed with a key that is not (or no longer) ours")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            audience=audience,
            options={"require": ["exp", "sub", "iat"], "verify_aud": True},
        )
    except jwt.PyJWTError as exc:
        raise _unauthorized(f"invalid token: {exc}") from exc
    return claims


async def decode(keys: KeyRing, token: str) -> Principal:
    """The principal an access token names."""
    claims = await verified_claims(keys, token)
    try:
        role = Role(claims["role"])
        principal = Principal(
            subject=claims["sub"],
            role=role,
            community_id=claims.get("community"),
            household_id=claims.get("household"),
            volunteer_id=claims.get("volunteer"),
            grid_id=claims.get("grid"),
            sub_district=claims.get("district"),
            name=claims.get("name"),
            ops=claims.get("ops") is True,
            account=claims.get("acct"),
            session_id=claims.get("sid"),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise _unauthorized(f"invalid token: {exc}") from exc
    missing = {
        Role.resident: principal.community_id is None or principal.household_id is None,
        Role.volunteer: principal.community_id is None or principal.volunteer_id is None,
        Role.grid_worker: principal.community_id is None or principal.grid_id is None,
        Role.staff: principal.community_id is None,
        Role.sub_district: principal.sub_district is None,
        Role.ops: False,
    }[role]
    if missing:
        raise _unauthorized(f"a {role} token lacks its scope claims")
    return principal


_bearer = HTTPBearer(auto_error=False)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:  # the gate (shared.edge) checked it before the body was read
        return known
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(
            401,
            "Unauthorized",
            "a bearer token is required",
            kind="unauthorized",
            headers=CHALLENGE,
        )
    keys: KeyRing = request.app.state.keys
    return await decode(keys, credentials.credentials)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise Problem(403, "Forbidden", f"role {principal.role} may not do this", kind="forbidden")


def require_community(principal: Principal, community_id: str) -> None:
    if not principal.may_see_community(community_id):
        raise Problem(403, "Forbidden", "outside your community", kind="forbidden")


def acting_as(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """The principal, if of one of these roles. As a dependency it refuses a wrong role (403)
    before the body is validated: a caller who may not act learns nothing of the body's
    shape (a check inside the route would come after a 422)."""

    async def check(principal: CurrentPrincipal) -> Principal:
        require(principal, *roles)
        return principal

    return check


Ops = Annotated[Principal, Depends(acting_as(Role.ops))]
Staff = Annotated[Principal, Depends(acting_as(Role.staff))]
StaffOrOps = Annotated[Principal, Depends(acting_as(Role.staff, Role.ops))]
# Staff's work a grid worker does too, for their grid (each route checks the grid).
Office = Annotated[Principal, Depends(acting_as(Role.staff, Role.grid_worker))]
ResidentOrStaff = Annotated[Principal, Depends(acting_as(Role.resident, Role.staff))]
ResidentOrOffice = Annotated[
    Principal, Depends(acting_as(Role.resident, Role.staff, Role.grid_worker))
]
VolunteerOrStaff = Annotated[Principal, Depends(acting_as(Role.volunteer, Role.staff))]
Volunteer = Annotated[Principal, Depends(acting_as(Role.volunteer))]
