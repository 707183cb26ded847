"""HTTP API of the identity service: sign-in by phone and one-time code, sessions, the
published keys, and staff naming staff. Thin: validate, send one command keyed by the
account, make tokens of the outcome (the only place a private key signs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import Field, field_validator
from pymongo.asynchronous.database import AsyncDatabase

from services.identity import domain
from services.identity.directory import Directory
from shared.api import Commands, Db, StrictBody
from shared.auth import (
    ACCESS_SECONDS,
    LINK_AUDIENCE,
    CurrentPrincipal,
    Principal,
    Role,
    claims_of,
    require,
    require_community,
    verified_claims,
)
from shared.commands import CommandSender, Outcome, new_command_id
from shared.contracts import identity as i
from shared.contracts.orders import sub_district_name
from shared.keys import KeyRing, SigningKey, jwks
from shared.log import get_logger
from shared.problem import Problem
from shared.signin import client_address

log = get_logger(__name__)

public = APIRouter(prefix="/auth", tags=["sign-in"])
router = APIRouter(prefix="/v1", tags=["sign-in"])
keys_router = APIRouter(tags=["keys"])
REQUESTS = "code_requests"  # per source address, for its rate limit
GRID = r"^[A-Za-z0-9._-]{1,64}$"


class PhoneIn(StrictBody):
    phone: str = Field(min_length=1, max_length=40, examples=["139 1234 5678"])

    @field_validator("phone")
    @classmethod
    def phone_shape(cls, value: str) -> str:
        account = i.phone_account(value)
        if account is None:
            raise ValueError("not a phone number: 8 to 15 digits, +86 or 0086 may lead")
        return account


class VerifyIn(PhoneIn):
    code: str = Field(min_length=1, max_length=20, examples=["482913"])
    identity_id: str | None = Field(default=None, max_length=200)

    @field_validator("code")
    @classmethod
    def code_shape(cls, value: str) -> str:
        import unicodedata

        digits = unicodedata.normalize("NFKC", value).replace(" ", "")
        if not (digits.isascii() and digits.isdigit() and len(digits) == domain.CODE_DIGITS):
            raise ValueError(f"the code is {domain.CODE_DIGITS} digits")
        return digits


class RefreshIn(StrictBody):
    refresh_token: str = Field(min_length=1, max_length=400)
    identity_id: str | None = Field(
        default=None, max_length=200, description="Act as another of this phone's people"
    )


class SignOutIn(StrictBody):
    refresh_token: str = Field(min_length=1, max_length=400)


class LinkIn(StrictBody):
    link: str = Field(min_length=1, max_length=4000, description="The token of a sign-in link")


class StaffIn(StrictBody):
    name: str = Field(min_length=1, max_length=100, examples=["Wang Fang"])


def secret_of(request: Request) -> str:
    return request.app.state.identity_secret  # type: ignore[no-any-return]


async def directory_of(request: Request, account: str) -> list[i.Identity]:
    """Who the other services' events say this phone is (read the same way whether it
    is anyone or not: the answer must not tell)."""
    directory: Directory = request.app.state.directory
    return await directory.identities_of(account)


def problem_of(outcome: Outcome) -> Problem:
    body = outcome.body or {}
    headers = {"Retry-After": str(body["retry_after"])} if "retry_after" in body else {}
    return Problem(
        outcome.status, outcome.title or "Refused", outcome.detail, headers=headers, **body
    )


def settled(outcome: Outcome) -> dict[str, Any]:
    """A decided outcome's body; a refusal as problem details; a request the owner has
    not decided within the wait is a 503 to retry (sign-in has no later to look at)."""
    if outcome.status == 202 and (outcome.body or {}).get("status") == "queued":
        raise Problem(503, "Busy", "not decided in time: try again", headers={"Retry-After": "2"})
    if outcome.status >= 400:
        raise problem_of(outcome)
    return outcome.body or {}


def subject_of(account: str, identity: dict[str, Any]) -> str:
    """Who the audit trails name: office people by name (and the phone's last digits, so
    two of one name stay two), everyone else by their phone's account."""
    if identity["role"] in ("staff", "grid_worker", "sub_district", "ops") and identity.get("name"):
        tail = "link" if account.startswith("link-") else f"…{account[-4:]}"
        return f"{identity['name']} ({tail})"
    return account


def tokens(request: Request, signed_in: dict[str, Any]) -> dict[str, Any]:
    """The tokens an owner's sign-in or refresh decision stands for."""
    key: SigningKey = request.app.state.signing_key
    refresh = domain.refresh_token(
        secret_of(request),
        domain.RefreshToken(signed_in["account"], signed_in["session_id"], signed_in["generation"]),
    )
    identity = signed_in.get("identity")
    access = None
    if identity is not None:
        claims = claims_of(
            role=Role(identity["role"]),
            subject=subject_of(signed_in["account"], identity),
            community_id=identity.get("community_id"),
            household_id=identity.get("household_id"),
            volunteer_id=identity.get("volunteer_id"),
            grid_id=identity.get("grid_id"),
            sub_district=identity.get("sub_district"),
            name=identity.get("name"),
            ops=signed_in.get("ops", False),
            ttl_seconds=ACCESS_SECONDS,
        )
        access = key.sign(claims | {"acct": signed_in["account"], "sid": signed_in["session_id"]})
    return {
        "token_type": "Bearer",
        "access_token": access,
        "expires_in": ACCESS_SECONDS if access else None,
        "refresh_token": refresh,
        "identity": identity and {k: identity.get(k) for k in ("identity_id", "role", "name")},
        "identities": signed_in.get("identities", []),
        "choose": access is None,  # more than one person: refresh with identity_id
    }


async def within_address_limit(request: Request, database: AsyncDatabase[dict[str, Any]]) -> None:
    """At most ``codes_per_address_hour`` codes asked from one source address an hour
    (counted across instances in the database: approximate under a burst, which is
    enough to stop a script walking through phone numbers)."""
    address = client_address(request)
    now = datetime.now(UTC)
    hour_ago = now - timedelta(hours=1)
    requests = database[REQUESTS]
    limit: int = request.app.state.codes_per_address_hour
    recent = (
        await requests.find({"ip": address, "at": {"$gt": hour_ago}})
        .sort("at", 1)
        .limit(limit)
        .to_list()
    )
    if len(recent) >= limit:
        wait = max(1, int((recent[0]["at"] + timedelta(hours=1) - now).total_seconds()) + 1)
        log.warning("identity.address_limited", address=address, retry_after=wait)
        raise Problem(
            429,
            "Too many codes",
            f"too many codes asked from this address: try again in {wait} s",
            headers={"Retry-After": str(wait)},
            retry_after=wait,
        )
    await requests.insert_one({"ip": address, "at": now})


async def forget_old_requests(database: AsyncDatabase[dict[str, Any]]) -> None:
    await database[REQUESTS].delete_many({"at": {"$lt": datetime.now(UTC) - timedelta(hours=1)}})


@public.post(
    "/code",
    status_code=202,
    summary="Text a one-time code to this phone (the same answer whether it is registered)",
    responses={429: {"description": "Too many codes for this phone or address (Retry-After)"}},
)
async def request_code(
    body: PhoneIn, request: Request, commands: Commands, database: Db
) -> JSONResponse:
    await within_address_limit(request, database)
    command = i.RequestCode(
        command_id=new_command_id(),
        account=body.phone,
        actor="self",
        directory=await directory_of(request, body.phone),
    )
    decided = settled(await commands.send(body.phone, command))
    return JSONResponse(decided, status_code=202)


@public.post(
    "/verify",
    summary="Sign in with the code: tokens (access ≤ 15 min, refresh rotating)",
    responses={401: {"description": "Wrong, expired or used code"}},
)
async def verify_code(body: VerifyIn, request: Request, commands: Commands) -> dict[str, Any]:
    command = i.VerifyCode(
        command_id=new_command_id(),
        account=body.phone,
        actor="self",
        code_mac=domain.code_mac(secret_of(request), body.phone, body.code),
        identity_id=body.identity_id,
        directory=await directory_of(request, body.phone),
    )
    return tokens(request, settled(await commands.send(body.phone, command)))


def read_refresh(request: Request, raw: str) -> domain.RefreshToken:
    token = domain.read_refresh_token(secret_of(request), raw)
    if token is None:
        raise Problem(401, "Unauthorized", "not a refresh token of ours", kind="unauthorized")
    return token


@public.post(
    "/refresh",
    summary="The next access and refresh tokens (a refresh token works once)",
    responses={401: {"description": "Signed out, used twice, or no longer allowed"}},
)
async def refresh(body: RefreshIn, request: Request, commands: Commands) -> dict[str, Any]:
    token = read_refresh(request, body.refresh_token)
    command = i.Refresh(
        command_id=new_command_id(),
        account=token.account,
        actor="self",
        session_id=token.session_id,
        generation=token.generation,
        identity_id=body.identity_id,
        directory=await directory_of(request, token.account),
    )
    return tokens(request, settled(await commands.send(token.account, command)))


@public.post("/sign-out", summary="End this session (its refresh token stops working)")
async def sign_out(body: SignOutIn, request: Request, commands: Commands) -> dict[str, Any]:
    token = read_refresh(request, body.refresh_token)
    command = i.SignOut(
        command_id=new_command_id(),
        account=token.account,
        actor="self",
        session_id=token.session_id,
        generation=token.generation,
    )
    return settled(await commands.send(token.account, command))


@public.post("/link", summary="Turn a one-time sign-in link into a session (once)")
async def exchange_link(body: LinkIn, request: Request, commands: Commands) -> dict[str, Any]:
    keys: KeyRing = request.app.state.keys
    claims = await verified_claims(keys, body.link, audience=LINK_AUDIENCE)
    try:
        identity = i.Identity.model_validate(claims["identity"])
        jti = str(claims["jti"])
    except (KeyError, ValueError) as exc:
        raise Problem(401, "Unauthorized", f"not a sign-in link: {exc}") from exc
    account = f"link-{jti}"
    command = i.ExchangeLink(
        command_id=new_command_id(),
        account=account,
        actor=f"link:{identity.name or identity.identity_id}",
        identity=identity,
        ops=claims.get("ops") is True,
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )
    return tokens(request, settled(await commands.send(account, command)))


@router.post("/sign-out-everywhere", summary="End every session of the phone you signed in with")
async def sign_out_everywhere(principal: CurrentPrincipal, commands: Commands) -> dict[str, Any]:
    if principal.account is None:
        raise Problem(409, "No session", "this token was not issued by sign-in")
    command = i.SignOut(
        command_id=new_command_id(), account=principal.account, actor=principal.subject
    )
    return settled(await commands.send(principal.account, command))


@router.get("/me", summary="Who this token says you are")
async def me(principal: CurrentPrincipal) -> dict[str, Any]:
    return principal.model_dump(mode="json", exclude_none=True)


async def _learn(
    commands: CommandSender, principal: Principal, phone: str, who: i.Identity, present: bool
) -> str:
    """Tell the phone's owner that the phone is ``who`` (or no longer): its account."""
    account = i.phone_account(phone)
    if account is None:
        raise Problem(422, "Invalid request", "not a phone number")
    command = i.Learn(
        command_id=new_command_id(),
        account=account,
        actor=principal.subject,
        identity=who,
        present=present,
        at=datetime.now(UTC),
        source=f"named by {principal.subject}",
    )
    settled(await commands.send(account, command))
    return account


async def _staff(
    commands: CommandSender, principal: Principal, community_id: str, phone: str, name: str | None
) -> dict[str, Any]:
    """Name a phone staff of the community (``name``), or no longer (None)."""
    require(principal, Role.staff, Role.ops)
    require_community(principal, community_id)
    who = i.Identity.of("staff", community_id, name=name)
    account = await _learn(commands, principal, phone, who, name is not None)
    return {"phone": f"+{account}", "community_id": community_id, "name": name}


Phone = Annotated[str, Field(min_length=1, max_length=40)]


@router.put(
    "/communities/{community_id}/staff/{phone}",
    summary="Name a phone staff of this community (ops, or its staff)",
)
async def name_staff(
    community_id: str, phone: Phone, body: StaffIn, principal: CurrentPrincipal, commands: Commands
) -> dict[str, Any]:
    return await _staff(commands, principal, community_id, phone, body.name)


@router.delete(
    "/communities/{community_id}/staff/{phone}",
    summary="This phone is no longer staff here: its sessions end at their next refresh",
)
async def remove_staff(
    community_id: str, phone: Phone, principal: CurrentPrincipal, commands: Commands
) -> dict[str, Any]:
    return await _staff(commands, principal, community_id, phone, None)


District = Annotated[str, PathParam(min_length=1, max_length=64, examples=["南关街道"])]


async def _officer(
    commands: CommandSender, principal: Principal, district: str, phone: str, name: str | None
) -> dict[str, Any]:
    """Name a phone an officer of the sub-district (``name``), or no longer (None)."""
    require(principal, Role.ops)
    named = sub_district_name(district)
    if named is None:
        raise Problem(422, "Invalid request", "a sub-district needs a name")
    district = named
    who = i.Identity.of("sub_district", ref=district, name=name)
    account = await _learn(commands, principal, phone, who, name is not None)
    return {"phone": f"+{account}", "sub_district": district, "name": name}


@router.put(
    "/sub-districts/{district}/officers/{phone}",
    summary="Name a phone an officer of this sub-district (街道): its communities' view (ops)",
)
async def name_officer(
    district: District, phone: Phone, body: StaffIn, principal: CurrentPrincipal, commands: Commands
) -> dict[str, Any]:
    return await _officer(commands, principal, district, phone, body.name)


@router.delete(
    "/sub-districts/{district}/officers/{phone}",
    summary="This phone is no longer an officer of the sub-district",
)
async def remove_officer(
    district: District, phone: Phone, principal: CurrentPrincipal, commands: Commands
) -> dict[str, Any]:
    return await _officer(commands, principal, district, phone, None)


@keys_router.get("/.well-known/jwks.json", summary="The public keys tokens are signed with")
async def published_keys(request: Request) -> JSONResponse:
    found = jwks(request.app.state.published_keys)
    return JSONResponse(found, headers={"Cache-Control": "public, max-age=60"})
