"""Bearer JWT (HS256, PyJWT) with role claims, and the FastAPI dependencies that check them.

Roles and their scope claims:
- ``resident``  — ``community`` and ``household``: their own household's orders and inbox;
- ``volunteer`` — ``community`` and ``volunteer``: their own registration, offers, tasks;
- ``staff``     — ``community``: everything of that one community;
- ``ops``       — no scope: creates communities, sees everything.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from shared.problem import Problem

ISSUER = "doorstep"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="doorstep"'}  # on every 401
ALGORITHM = "HS256"


class Role(StrEnum):
    resident = "resident"
    volunteer = "volunteer"
    staff = "staff"
    ops = "ops"


class Principal(BaseModel):
    subject: str
    role: Role
    community_id: str | None = None
    household_id: str | None = None
    volunteer_id: str | None = None

    def may_see_community(self, community_id: str) -> bool:
        return self.role is Role.ops or self.community_id == community_id

    @property
    def recipient(self) -> str:
        """The notify inbox this principal reads."""
        if self.role is Role.resident:
            return f"household:{self.household_id}"
        if self.role is Role.volunteer:
            return f"volunteer:{self.volunteer_id}"
        if self.role is Role.staff:
            return f"staff:{self.community_id}"
        return "ops"


def mint(
    secret: str,
    *,
    role: Role,
    subject: str,
    community_id: str | None = None,
    household_id: str | None = None,
    volunteer_id: str | None = None,
    ttl_seconds: int = 12 * 3600,
) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "sub": subject,
        "role": role.value,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if community_id:
        claims["community"] = community_id
    if household_id:
        claims["household"] = household_id
    if volunteer_id:
        claims["volunteer"] = volunteer_id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub"]},
        )
        role = Role(claims["role"])
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise Problem(401, "Unauthorized", f"invalid token: {exc}", kind="unauthorized") from exc
    principal = Principal(
        subject=claims["sub"],
        role=role,
        community_id=claims.get("community"),
        household_id=claims.get("household"),
        volunteer_id=claims.get("volunteer"),
    )
    missing = {
        Role.resident: principal.community_id is None or principal.household_id is None,
        Role.volunteer: principal.community_id is None or principal.volunteer_id is None,
        Role.staff: principal.community_id is None,
        Role.ops: False,
    }[role]
    if missing:
        raise Problem(401, "Unauthorized", f"a {role} token lacks its scope claims")
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
    secret: str = request.app.state.jwt_secret
    return decode(secret, credentials.credentials)


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
ResidentOrStaff = Annotated[Principal, Depends(acting_as(Role.resident, Role.staff))]
VolunteerOrStaff = Annotated[Principal, Depends(acting_as(Role.volunteer, Role.staff))]
Volunteer = Annotated[Principal, Depends(acting_as(Role.volunteer))]
