"""The field app's routes: the app itself (page, script, service worker, manifest), sign-in
by phone and code, and ``/api/{service}/...`` passed on to the services with the person's
token. Every write needs the ``X-Doorstep-App`` header: a page on another site cannot send
it without asking first (CORS), so the cookies cannot be used from there."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import Field

from shared import refusals, signin, trace
from shared.api import StrictBody
from shared.auth import Principal, Role, decode
from shared.problem import Problem
from shared.signin import (
    ACCESS_COOKIE,
    REFRESH_COOKIE,
    IdentityAway,
    IdentityClient,
    SignInRefused,
    Tokens,
    expires_soon,
)

STATIC = Path(__file__).parent / "static"
SHELL = ("app.js", "app.css", "icon.svg")  # what the service worker keeps for offline
FIELD_ROLES = (Role.resident, Role.volunteer)
SERVICES = ("orders", "volunteers", "dispatch", "notify")
PHOTO_BYTES = 600_000  # a delivery photo passed on to dispatch (which holds the same limit)
PASSED_HEADERS = (
    "content-type",
    "idempotency-key",
    "x-correlation-id",
    "accept-language",
    "last-event-id",
)

router = APIRouter()


def version() -> str:
    """The app's version: a hash of its files. A new one makes phones update."""
    digest = hashlib.sha256()
    for name in (*SHELL, "index.html", "sw.js"):
        digest.update((STATIC / name).read_bytes())
    return digest.hexdigest()[:12]


VERSION = version()


class Upstream:
    """The services, called with the person's own token (they enforce role and scope)."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=3.0))

    async def close(self) -> None:
        await self.client.aclose()


def app_only(request: Request) -> None:
    if request.method not in ("GET", "HEAD") and request.headers.get("x-doorstep-app") != "1":
        raise Problem(403, "Forbidden", "writes come from the app (X-Doorstep-App: 1)")


Written = Annotated[None, Depends(app_only)]


# --- the app -------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    page = (STATIC / "index.html").read_text().replace("__VERSION__", VERSION)
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


@router.get("/sw.js", include_in_schema=False)
async def service_worker() -> Response:
    script = (STATIC / "sw.js").read_text().replace("__VERSION__", VERSION)
    headers = {"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"}
    return Response(script, media_type="text/javascript", headers=headers)


@router.get("/manifest.webmanifest", include_in_schema=False)
async def manifest() -> JSONResponse:
    return JSONResponse(
        {
            "name": "Doorstep 社区服务",
            "short_name": "Doorstep",
            "start_url": "/",
            "display": "standalone",
            "background_color": "#ffffff",
            "theme_color": "#b91c1c",
            "lang": "zh-CN",
            "icons": [{"src": f"/static/icon.svg?v={VERSION}", "sizes": "any"}],
        },
        media_type="application/manifest+json",
    )


# --- who is signed in ----------------------------------------------------------------------


def who_of(principal: Principal) -> dict[str, Any]:
    return {
        "role": principal.role.value,
        "community_id": principal.community_id,
        "volunteer_id": principal.volunteer_id,
        "household_id": principal.household_id,
        "name": principal.name,
    }


async def principal_of(request: Request) -> tuple[Principal, str, Tokens | None]:
    """The person the cookies say, their access token, and new tokens if refreshed."""
    access = request.cookies.get(ACCESS_COOKIE)
    refresh = request.cookies.get(REFRESH_COOKIE)
    if access and not expires_soon(access):
        try:
            return await decode(request.app.state.keys, access), access, None
        except Problem:
            pass  # a retired key, tampered: the refresh token decides
    if not refresh:
        raise Problem(401, "Unauthorized", "sign in first")
    identity: IdentityClient = request.app.state.identity
    try:
        tokens = await identity.refresh(refresh)
    except SignInRefused as exc:
        raise Problem(401, "Unauthorized", f"signed out: {exc}") from exc
    except IdentityAway as exc:
        raise Problem(503, "Service unavailable", "sign-in is not answering") from exc
    return await decode(request.app.state.keys, tokens.access), tokens.access, tokens


def set_tokens(request: Request, response: Response, tokens: Tokens) -> None:
    signin.set_tokens(response, tokens, secure=request.app.state.cookie_secure)


async def signed_in(request: Request, tokens: Tokens) -> JSONResponse:
    principal = await decode(request.app.state.keys, tokens.access)
    if principal.role not in FIELD_ROLES:
        raise Problem(
            403, "Forbidden", "the app is for cadres and residents; staff: console", reason="staff"
        )
    response = JSONResponse({"who": who_of(principal)})
    set_tokens(request, response, tokens)
    return response


@router.get("/session", tags=["session"], summary="Who is signed in")
async def session(request: Request) -> JSONResponse:
    principal, _, renewed = await principal_of(request)
    response = JSONResponse({"who": who_of(principal)})
    if renewed is not None:
        set_tokens(request, response, renewed)
    return response


class CodeIn(StrictBody):
    phone: str = Field(min_length=3, max_length=40)


class VerifyIn(CodeIn):
    code: str = Field(min_length=4, max_length=12)
    identity_id: str | None = Field(default=None, max_length=200)


class ChooseIn(StrictBody):
    identity_id: str = Field(min_length=3, max_length=200)


async def asked(call: Any) -> Any:
    try:
        return await call
    except SignInRefused as exc:
        # As identity said it, with the reason in a word the app says in Chinese
        said: dict[str, Any] = {"reason": exc.reason}
        if exc.tries_left is not None:
            said["tries_left"] = exc.tries_left
        retry = None
        if exc.retry_after:
            said["retry_after"] = exc.retry_after
            retry = {"Retry-After": str(exc.retry_after)}
        raise Problem(exc.status, exc.title, str(exc), headers=retry, **said) from exc
    except IdentityAway as exc:
        raise Problem(503, "Service unavailable", "sign-in is not answering") from exc


@router.post("/session/code", tags=["session"], summary="Text a sign-in code to a phone")
async def send_code(body: CodeIn, request: Request, _: Written) -> dict[str, Any]:
    await asked(request.app.state.identity.send_code(body.phone, signin.client_address(request)))
    return {"sent": True}


@router.post("/session/verify", tags=["session"], summary="Sign in with the texted code")
async def verify(body: VerifyIn, request: Request, _: Written) -> JSONResponse:
    answer = await asked(request.app.state.identity.verify(body.phone, body.code, body.identity_id))
    mine = [x for x in answer.get("identities", []) if x["role"] in ("resident", "volunteer")]
    if answer.get("access_token") and answer["identity"]["role"] in ("resident", "volunteer"):
        return await signed_in(request, Tokens(answer["access_token"], answer["refresh_token"]))
    if not mine:
        await request.app.state.identity.sign_out(answer["refresh_token"])
        raise Problem(
            403,
            "Forbidden",
            "no cadre or household answers to this phone here",
            reason="not_registered",
        )
    # The phone is more than one person (a cadre whose family is a household): choose.
    response = JSONResponse({"choose": mine})
    set_tokens(request, response, Tokens("", answer["refresh_token"]))
    return response


@router.post("/session/choose", tags=["session"], summary="Act as one of the phone's people")
async def choose(body: ChooseIn, request: Request, _: Written) -> JSONResponse:
    refresh = request.cookies.get(REFRESH_COOKIE)
    if not refresh:
        raise Problem(401, "Unauthorized", "sign in first")
    tokens = await asked(request.app.state.identity.act_as(refresh, body.identity_id))
    return await signed_in(request, tokens)


@router.post("/session/sign-out", tags=["session"], summary="Sign out (here and at identity)")
async def sign_out(request: Request, _: Written) -> JSONResponse:
    refresh = request.cookies.get(REFRESH_COOKIE)
    if refresh:
        await request.app.state.identity.sign_out(refresh)
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(ACCESS_COOKIE)
    response.delete_cookie(REFRESH_COOKIE)
    return response


# --- the services, with the person's token ---------------------------------------------------


@router.api_route(
    "/api/{service}/v1/{path:path}",
    methods=["GET", "POST", "PUT"],
    tags=["api"],
    summary="A service's /v1 route, called with the signed-in person's token",
)
async def passed_on(service: str, path: str, request: Request, _: Written) -> Response:
    if service not in SERVICES:
        raise Problem(404, "Not found", f"no service {service!r}")
    if any(segment in (".", "..") for segment in path.split("/")):
        # "/v1/../metrics" would leave /v1 once the URL is resolved upstream
        raise Problem(404, "Not found", "no such route")
    _principal, access, renewed = await principal_of(request)
    upstream: Upstream = request.app.state.upstream
    headers = {k: v for k, v in request.headers.items() if k.lower() in PASSED_HEADERS}
    headers["authorization"] = f"Bearer {access}"
    headers["x-correlation-id"] = trace.current() or ""  # the phone's request, followed on
    if service == "notify" and path == "inbox/stream":
        return await streamed(upstream, f"{upstream.urls[service]}/v1/{path}", request, headers)
    try:
        answer = await upstream.client.request(
            request.method,
            f"{upstream.urls[service]}/v1/{path}",
            params=request.query_params,
            content=await request.body(),
            headers=headers,
        )
    except httpx.HTTPError as exc:
        raise Problem(503, "Service unavailable", f"{service} is not answering") from exc
    response = Response(
        in_words(answer),
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
        headers={"Cache-Control": "no-store"},
    )
    if renewed is not None:
        set_tokens(request, response, renewed)
    return response


def in_words(answer: httpx.Response) -> bytes:
    """The answer as the service gave it; a refusal whose title we know also says what it
    means in Chinese (``words_zh``): the services explain in English, the app's people
    read Chinese first."""
    if answer.status_code < 400 or "problem+json" not in answer.headers.get("content-type", ""):
        return answer.content
    try:
        body = answer.json()
        words = refusals.WORDS.get(body.get("title") or "")
    except (ValueError, AttributeError):
        return answer.content
    return answer.content if words is None else json.dumps({**body, "words_zh": words}).encode()


async def streamed(
    upstream: Upstream, url: str, request: Request, headers: dict[str, str]
) -> Response:
    """The inbox's live stream (SSE), passed through as it comes: the app's live updates
    while it is open (no Web Push: unreachable in a sealed network and in China)."""
    outgoing = upstream.client.build_request(
        "GET", url, headers=headers, timeout=httpx.Timeout(None, connect=3.0)
    )
    try:
        answer = await upstream.client.send(outgoing, stream=True)
    except httpx.HTTPError as exc:
        raise Problem(503, "Service unavailable", "notify is not answering") from exc
    if answer.status_code != 200:
        body = await answer.aread()
        await answer.aclose()
        return Response(body, answer.status_code, media_type=answer.headers.get("content-type"))

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            return  # notify went away: the app reconnects (EventSource does by itself)
        finally:
            await answer.aclose()

    return StreamingResponse(
        relay(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
