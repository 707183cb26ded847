"""Who is signed in to the console, and how they got there.

A sign-in link carries a short-lived one-time token (``doorstep console-link`` prints one);
following it sets an httpOnly cookie holding a console session. Neither is a bearer token
the services accept (another issuer): the page never holds an API token. The console calls
the services for the person with a token it mints per call, valid for a minute.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace

import jwt

from shared.auth import ALGORITHM, Role, mint

ISSUER = "doorstep-console"
SIGN_IN = "sign-in"
SESSION = "session"
COOKIE = "doorstep_console"
SESSION_SECONDS = 12 * 3600
LINK_SECONDS = 15 * 60
CALL_SECONDS = 60


class SignInRefused(Exception):
    pass


@dataclass(frozen=True)
class Person:
    """Staff of one community; a grid worker: staff scoped to one grid; or ops: staff of
    whichever community they open (they may open any)."""

    name: str
    community_id: str
    grid_id: str | None = None
    ops: bool = False

    @property
    def role(self) -> str:
        return "ops" if self.ops else "grid_worker" if self.grid_id else "staff"

    def sees_grid(self, grid_id: str | None) -> bool:
        return self.grid_id is None or grid_id == self.grid_id

    def opening(self, community_id: str) -> Person:
        return replace(self, community_id=community_id)

    def claims(self) -> dict[str, object]:
        claims: dict[str, object] = {"sub": self.name, "community": self.community_id}
        if self.grid_id:
            claims["grid"] = self.grid_id
        if self.ops:
            claims["ops"] = True
        return claims

    def api_token(self, secret: str) -> str:
        # The services know staff of a community; the grid is the console's to enforce.
        # Ops act as staff of the community they opened: every page reads one community,
        # and the audit trail names them as it names staff.
        return mint(
            secret,
            role=Role.staff,
            subject=f"console:{self.name}",
            community_id=self.community_id,
            ttl_seconds=CALL_SECONDS,
        )


def _sign(secret: str, person: Person, audience: str, seconds: int) -> str:
    now = int(time.time())
    claims = {
        **person.claims(),
        "iss": ISSUER,
        "aud": audience,
        "iat": now,
        "exp": now + seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _read(secret: str, token: str, audience: str) -> tuple[Person, str, int]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            audience=audience,
            options={"require": ["exp", "sub", "jti", "aud"]},
        )
        person = Person(
            claims["sub"], claims["community"], claims.get("grid"), claims.get("ops") is True
        )
    except (jwt.PyJWTError, KeyError) as exc:
        raise SignInRefused(str(exc)) from exc
    return person, claims["jti"], int(claims["exp"])


def sign_in_link(secret: str, base_url: str, person: Person) -> str:
    return f"{base_url.rstrip('/')}/signin?t={_sign(secret, person, SIGN_IN, LINK_SECONDS)}"


def session_token(secret: str, person: Person) -> str:
    return _sign(secret, person, SESSION, SESSION_SECONDS)


def session_person(secret: str, token: str) -> Person:
    return _read(secret, token, SESSION)[0]


class SignIns:
    """Links are good once: the ids of those used are kept until they expire (one console
    instance; behind several, pin sign-in to one or share this set)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._used: dict[str, int] = {}

    def redeem(self, token: str) -> Person:
        person, jti, expires = _read(self._secret, token, SIGN_IN)
        now = int(time.time())
        self._used = {j: e for j, e in self._used.items() if e > now}
        if jti in self._used:
            raise SignInRefused("this sign-in link was used already")
        self._used[jti] = expires
        return person
