"""The identity service's commands (``identity.commands``) and events (``identity.events``).

Unlike every other topic these are keyed by **account**, not community: sign-in starts
from a phone number, before anyone knows which community (or communities) it belongs to.
An account is a phone in one normal form (``phone_account``), or a one-time sign-in link.
What a phone is (a household's, a cadre's, a grid worker's...) the service reads from its
directory (a read model of the other services' events) and hands to the owner with each
sign-in command (``directory``); staff and ops named by people are the owner's own
decisions (``Learn``).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.contracts.base import Payload

ROLES = ("resident", "volunteer", "grid_worker", "staff", "sub_district", "ops")
_SEPARATORS = re.compile(r"[\s()\-.]")


def phone_account(raw: str) -> str | None:
    """A phone number in one normal form: its digits with the country code, no "+"
    ("+86 139-1234-5678", "0086 13912345678", "１３９１２３４５６７８" → "8613912345678");
    None when it is not a phone number. A mainland mobile (11 digits from 1) gets 86."""
    text = _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw or ""))
    if text.startswith("+"):
        digits = text[1:]
    elif text.startswith("00"):
        digits = text[2:]
    elif len(text) == 11 and text.startswith("1"):
        digits = "86" + text
    else:
        digits = text
    if not (digits.isascii() and digits.isdigit() and 8 <= len(digits) <= 15):
        return None
    return digits


class Identity(BaseModel):
    """One of the people a phone is: what a token for it says."""

    identity_id: str  # "resident:{c}:{hh}", "volunteer:{c}:{v}", "grid_worker:{c}:{g}", ...
    role: Literal["resident", "volunteer", "grid_worker", "staff", "sub_district", "ops"]
    community_id: str | None = None
    household_id: str | None = None
    volunteer_id: str | None = None
    grid_id: str | None = None
    sub_district: str | None = None  # a sub-district officer's 街道
    name: str | None = None  # in words: the person, or the household's address

    @classmethod
    def of(
        cls,
        role: str,
        community_id: str | None = None,
        ref: str | None = None,
        name: str | None = None,
    ) -> Identity:
        scope = {
            "resident": "household_id",
            "volunteer": "volunteer_id",
            "grid_worker": "grid_id",
            "sub_district": "sub_district",
        }.get(role)
        parts = [role, *(p for p in (community_id, ref) if p)]
        return cls(
            identity_id=":".join(parts),
            role=role,  # type: ignore[arg-type]
            community_id=community_id,
            name=name,
            **({scope: ref} if scope else {}),
        )


class IdentityCommand(Payload):
    command_id: str
    account: str
    actor: str = "anyone"


class AsWhom(IdentityCommand):
    """A command about who the phone is: what the directory said of it when it was sent."""

    directory: list[Identity] = Field(default_factory=list)


class RequestCode(AsWhom):
    """Send a one-time code to this phone (whether it is known or not: same answer)."""

    type: Literal["doorstep.sign_in.request_code.v1"] = "doorstep.sign_in.request_code.v1"


class VerifyCode(AsWhom):
    """A code typed in, as its MAC (the code itself never travels)."""

    type: Literal["doorstep.sign_in.verify_code.v1"] = "doorstep.sign_in.verify_code.v1"
    code_mac: str
    identity_id: str | None = None  # who to act as, if the phone is more than one person


class ExchangeLink(IdentityCommand):
    """A one-time sign-in link (minted with the issuer's key) becomes a session, once."""

    type: Literal["doorstep.sign_in.exchange_link.v1"] = "doorstep.sign_in.exchange_link.v1"
    identity: Identity
    ops: bool = False
    expires_at: datetime


class Refresh(AsWhom):
    """A refresh token presented: the next one (and who the session acts as now)."""

    type: Literal["doorstep.session.refresh.v1"] = "doorstep.session.refresh.v1"
    session_id: str
    generation: int = Field(ge=1)
    identity_id: str | None = None


class SignOut(IdentityCommand):
    type: Literal["doorstep.session.sign_out.v1"] = "doorstep.session.sign_out.v1"
    session_id: str | None = None  # None: every session of the account
    generation: int | None = None


class Learn(IdentityCommand):
    """A phone is (``present``) or is no longer staff or ops, as people named it (staff,
    ops, `make ops-account`). An older fact than the one known changes nothing."""

    type: Literal["doorstep.identity.learn.v1"] = "doorstep.identity.learn.v1"
    identity: Identity
    present: bool
    at: datetime
    source: str


class CodeIssued(Payload):
    """A code was made for a phone; the service's SMS sender texts it if the phone is
    known (it derives the code again from ``code_id``: the code is in no event)."""

    type: Literal["doorstep.sign_in.code_issued.v1"] = "doorstep.sign_in.code_issued.v1"
    account: str
    code_id: str
    known: bool
    expires_at: datetime


class SessionEnded(Payload):
    type: Literal["doorstep.session.ended.v1"] = "doorstep.session.ended.v1"
    account: str
    session_id: str
    reason: str


class IdentitySummary(BaseModel):
    identity_id: str
    role: str
    name: str | None = None


COMMANDS = (RequestCode, VerifyCode, ExchangeLink, Refresh, SignOut, Learn)
EVENTS = (CodeIssued, SessionEnded)
PAYLOADS = COMMANDS + EVENTS
