"""The console's pages and the actions on them. Thin, like every route here: who is signed
in, what the services say (read through ``Upstream``), the page; an action is one call to
the service that owns the decision, then back to the page with what it answered."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
import unicodedata
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlparse

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.templating import Jinja2Templates

from services.console import live
from services.console.i18n import LANGUAGES, say, words
from services.console.overview import OPEN, overview
from services.console.session import (
    ACCESS_COOKIE,
    REFRESH_COOKIE,
    IdentityAway,
    Person,
    Sessions,
    SignInRefused,
    Tokens,
)
from services.console.upstream import Queued, Refused, Unavailable, Upstream
from shared import refusals, signin
from shared.contracts.orders import CommunityPolicy

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
CATEGORIES = (
    "groceries",
    "medicine",
    "garbage",
    "home_test",
    "app_help",
    "visit",
    "transfer",
    "other",
)
ID = r"^[A-Za-z0-9._:-]{1,100}$"
# Spreadsheets run a cell that starts with one of these as a formula: a household's note
# must never become one in the office's export.
FORMULA = re.compile(r"^[=+\-@\t\r]")


class SignInNeeded(Exception):
    pass


class NotYours(Exception):
    """A grid worker asked for something outside their grid, or staff-only."""


class SubDistrictOnly(Exception):
    """A sub-district officer asked for a community's page: theirs is the sub-district's."""


async def person(request: Request) -> Person:
    """Who works in a community is signed in; a sub-district officer is sent to their
    page."""
    who = await signed_in_person(request)
    if who.sub_district:
        raise SubDistrictOnly
    return who


async def overseer(request: Request) -> Person:
    """Who may see many communities at once: ops, or a sub-district's officer."""
    who = await signed_in_person(request)
    if not (who.ops or who.sub_district):
        raise NotYours
    return who


async def signed_in_person(request: Request) -> Person:
    """Who is signed in (refreshing their access token at identity when it is due: the
    new cookies go out with this response, see ``renew_cookies``)."""
    sessions: Sessions = request.app.state.sessions
    try:
        who, renewed = await sessions.current(
            request.cookies.get(ACCESS_COOKIE), request.cookies.get(REFRESH_COOKIE)
        )
    except SignInRefused:
        raise SignInNeeded from None
    except IdentityAway as exc:
        raise Unavailable("identity") from exc
    if renewed is not None:
        request.state.renewed = renewed
    if who.community_id:
        request.state.clock = await clock_of_community(request, who)  # in its own clock
    return who


async def staff_only(who: Annotated[Person, Depends(person)]) -> Person:
    if who.grid_id is not None:
        raise NotYours
    return who


async def same_origin(request: Request) -> None:
    """Forms post only from the console's own pages (the cookie is SameSite=Lax too)."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlparse(origin).netloc != request.url.netloc:
        raise NotYours


Who = Annotated[Person, Depends(person)]
Overseer = Annotated[Person, Depends(overseer)]
StaffWho = Annotated[Person, Depends(staff_only)]
Posted = Depends(same_origin)


async def upstream(request: Request) -> Upstream:
    return request.app.state.upstream  # type: ignore[no-any-return]


Services = Annotated[Upstream, Depends(upstream)]


def language(request: Request) -> str:
    """The one chosen (the switch sets a cookie), else the first of the browser's that we
    speak, by its weights; Chinese when it names neither (the people are Chinese)."""
    chosen = request.cookies.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return negotiated(request.headers.get("accept-language", ""))


def negotiated(header: str) -> str:
    weighted = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        try:
            weight = float(params.strip().removeprefix("q=")) if params else 1.0
        except ValueError:
            weight = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and weight > 0:
            weighted.append((-weight, i, primary))
    return min(weighted)[2] if weighted else "zh"


BEIJING = CommunityPolicy().clock()  # unless the community says otherwise
CLOCKS: dict[str, tuple[tzinfo, float]] = {}  # community -> (its clock, when read)
CLOCK_FOR = 300.0  # seconds a community's clock is trusted before it is read again


async def clock_of_community(request: Request, who: Person) -> tzinfo:
    """The community's clock (its policy: a named zone or a UTC offset)."""
    known = CLOCKS.get(who.community_id)
    if known is not None and time.monotonic() - known[1] < CLOCK_FOR:
        return known[0]
    clock = BEIJING
    try:
        community = await request.app.state.upstream.get(
            who, "orders", f"/v1/communities/{who.community_id}"
        )
        clock = CommunityPolicy.model_validate(community.get("policy") or {}).clock()
    except (Refused, Unavailable):
        pass  # shown in Beijing time meanwhile
    CLOCKS[who.community_id] = (clock, time.monotonic())
    return clock


def local_time(clock: tzinfo) -> Any:
    """A Jinja filter: an ISO time (or datetime) as the community's own clock reads it."""

    def shown(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if not value:
            return ""
        try:
            at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return at.astimezone(clock).strftime(fmt)

    return shown


def page(request: Request, name: str, who: Person | None, **context: Any) -> HTMLResponse:
    lang = language(request)
    return templates.TemplateResponse(
        request,
        name,
        {
            "who": who,
            "t": words(lang),
            "lang": lang,
            "said": said_back(request, lang),
            "path": request.url.path,
            "now": datetime.now(UTC),
            "local": local_time(getattr(request.state, "clock", BEIJING)),
            "say": say(lang),
            **context,
        },
    )


def on_console(path: str, otherwise: str) -> str:
    """A path of this console, or ``otherwise``: a redirect never leaves it ("//host" would)."""
    return path if path.startswith("/") and not path.startswith("//") else otherwise


def back(to: str, said: str, refused: Refused | None = None) -> RedirectResponse:
    """Back to the page, saying how it went: a word of ours, or a service's refusal (its
    title and status along, for the page to say it in the person's words)."""
    query = {"said": said}
    if refused is not None:
        query |= {"why": refused.title or "", "refused": str(refused.status)}
    joiner = "&" if "?" in to else "?"
    return RedirectResponse(f"{to}{joiner}{urlencode(query)}", status_code=303)


def said_back(request: Request, lang: str) -> str | None:
    said, refused = request.query_params.get("said"), request.query_params.get("refused")
    if said and refused and refused.isdigit():
        return refusals.said(request.query_params.get("why"), int(refused), said, lang)
    return said


async def act(to: str, action: Awaitable[Any], done: str = "done") -> RedirectResponse:
    """Do one thing through the service that decides it; back to the page with its answer."""
    try:
        await action
    except Refused as refused:
        return back(to, refused.detail, refused)
    except Queued:
        return back(to, "queued")
    except Unavailable:
        return back(to, "unavailable")
    return back(to, done)


# --- sign-in -------------------------------------------------------------------------------


@router.get("/signin")
async def sign_in(
    request: Request, t: Annotated[str | None, Query(max_length=4000)] = None
) -> Response:
    """A one-time link's token (``t``) signs in at once; otherwise the phone form."""
    if t is None:
        return page(request, "signin.html", None, step="phone")
    sessions: Sessions = request.app.state.sessions
    try:
        tokens = await sessions.redeem_link(t)
        await sessions.person(tokens)
    except SignInRefused:
        return page(request, "signin.html", None, step="phone", refused=True)
    except IdentityAway as exc:
        raise Unavailable("identity") from exc
    return signed_in(request, tokens)


@router.post("/signin/code", dependencies=[Posted])
async def sign_in_code(request: Request, phone: Annotated[str, Form(max_length=40)]) -> Response:
    """The code goes to the phone by SMS (the same answer for a phone nobody knows)."""
    sessions: Sessions = request.app.state.sessions
    try:
        await sessions.send_code(phone, signin.client_address(request))
    except SignInRefused as refused:
        return page(request, "signin.html", None, step="phone", problem=refused.reason)
    except IdentityAway as exc:
        raise Unavailable("identity") from exc
    return page(request, "signin.html", None, step="code", phone=phone)


@router.post("/signin/verify", dependencies=[Posted])
async def sign_in_verify(
    request: Request,
    phone: Annotated[str, Form(max_length=40)],
    code: Annotated[str, Form(max_length=20)],
    identity_id: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    sessions: Sessions = request.app.state.sessions
    try:
        answer = await sessions.verify(phone, code, identity_id)
    except SignInRefused as refused:
        return page(request, "signin.html", None, step="code", phone=phone, problem=refused.reason)
    except IdentityAway as exc:
        raise Unavailable("identity") from exc
    office = [x for x in answer["identities"] if x["role"] in ("staff", "grid_worker", "ops")]
    if answer.get("access_token") and answer["identity"]["role"] in ("staff", "grid_worker"):
        return signed_in(request, Tokens(answer["access_token"], answer["refresh_token"]))
    if not office:
        await sessions.sign_out(answer["refresh_token"])
        return page(request, "signin.html", None, step="phone", problem="not_office")
    # More than one person (or ops, who open a community): choose, with the session kept.
    response = page(request, "signin.html", None, step="choose", identities=office)
    set_tokens(request, response, Tokens("", answer["refresh_token"]))
    return response


@router.post("/signin/choose", dependencies=[Posted])
async def sign_in_choose(
    request: Request,
    identity_id: Annotated[str, Form(max_length=200)],
    community: Annotated[str | None, Form(max_length=100, pattern=ID)] = None,
) -> Response:
    refresh = request.cookies.get(REFRESH_COOKIE)
    if not refresh:
        raise SignInNeeded
    if identity_id == "ops":  # ops act as staff of the community they name
        identity_id = f"staff:{community or ''}"
    sessions: Sessions = request.app.state.sessions
    try:
        tokens = await sessions.act_as(refresh, identity_id)
        await sessions.person(tokens)
    except SignInRefused as refused:
        return page(request, "signin.html", None, step="phone", problem=refused.reason)
    except IdentityAway as exc:
        raise Unavailable("identity") from exc
    return signed_in(request, tokens)


def set_tokens(request: Request, response: Response, tokens: Tokens) -> None:
    signin.set_tokens(response, tokens, secure=request.app.state.cookie_secure)


def signed_in(request: Request, tokens: Tokens) -> Response:
    response = RedirectResponse("/", status_code=303)
    set_tokens(request, response, tokens)
    return response


@router.get("/community")
async def open_community(
    request: Request,
    who: Who,
    services: Services,
    c: Annotated[str, Query(pattern=ID, description="the community to open")],
) -> Response:
    """Ops open any community (staff and grid workers stay in their own)."""
    if not who.ops:
        raise NotYours
    sessions: Sessions = request.app.state.sessions
    refresh = getattr(request.state, "renewed", None) or Tokens(
        "", request.cookies.get(REFRESH_COOKIE) or ""
    )
    try:  # identity makes ops staff of the community they open
        tokens = await sessions.act_as(refresh.refresh, f"staff:{c}")
        opened = await sessions.person(tokens)
    except SignInRefused:
        raise SignInNeeded from None
    except IdentityAway as exc:
        raise Unavailable("identity") from exc
    request.state.renewed = None
    response: Response = RedirectResponse("/", status_code=303)
    try:
        await services.get(opened, "orders", f"/v1/communities/{c}")
    except Refused:
        # No such community: back to the one they had open (the refresh token the switch
        # spent is replaced by the one switching back gives).
        response = back("/", "no_such_community")
        try:
            tokens = await sessions.act_as(tokens.refresh, f"staff:{who.community_id}")
        except SignInRefused:
            raise SignInNeeded from None
    set_tokens(request, response, tokens)
    return response


@router.post("/signout", dependencies=[Posted])
async def sign_out(request: Request) -> Response:
    refresh = request.cookies.get(REFRESH_COOKIE)
    if refresh:  # the session ends at identity too, not only in this browser
        await request.app.state.sessions.sign_out(refresh)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(ACCESS_COOKIE)
    response.delete_cookie(REFRESH_COOKIE)
    return response


@router.get("/lang/{lang}")
async def choose_language(lang: str, request: Request) -> Response:
    came_from = urlparse(request.headers.get("referer", "/")).path
    response = RedirectResponse(on_console(came_from, "/"), status_code=303)
    if lang in LANGUAGES:
        response.set_cookie("lang", lang, max_age=365 * 24 * 3600, samesite="lax")
    return response


# --- the board -----------------------------------------------------------------------------


async def open_orders(services: Upstream, who: Person) -> list[dict[str, Any]]:
    grid = {"grid_id": who.grid_id} if who.grid_id else {}
    pages = await asyncio.gather(
        *(
            services.get(who, "orders", "/v1/orders", status=status, limit=500, **grid)
            for status in OPEN
        )
    )
    return [order for found in pages for order in found["orders"]]


async def board_context(services: Upstream, who: Person) -> dict[str, Any]:
    community, orders, board, cadres = await asyncio.gather(
        services.get(who, "orders", f"/v1/communities/{who.community_id}"),
        open_orders(services, who),
        services.get(who, "dispatch", "/v1/tasks"),
        services.get(who, "volunteers", "/v1/volunteers", on_duty=True, limit=500),
    )
    shifts = {
        v["volunteer_id"]: datetime.fromisoformat(v["shift"]["started_at"])
        for v in cadres["volunteers"]
        if v.get("shift")
    }
    grids = overview(who, community, orders, board["tasks"], board["on_duty"], shifts)
    return {"community": community, "grids": grids}


@router.get("/")
async def board(request: Request, who: Who, services: Services) -> HTMLResponse:
    return page(request, "board.html", who, **await board_context(services, who))


@router.get("/parts/board")
async def board_part(request: Request, who: Who, services: Services) -> HTMLResponse:
    return page(request, "_board.html", who, **await board_context(services, who))


@router.get("/live", response_class=EventSourceResponse)
async def changes(request: Request, who: Who) -> AsyncIterable[ServerSentEvent]:
    feed: live.Changes = request.app.state.changes
    async with feed.watch(who.community_id) as woken:
        yield ServerSentEvent(comment="live")
        while True:
            try:
                await asyncio.wait_for(woken.wait(), live.KEEPALIVE)
            except TimeoutError:
                yield ServerSentEvent(comment="keepalive")
                continue
            woken.clear()
            yield ServerSentEvent(event="changed", data="")
            await asyncio.sleep(live.EVERY)


# --- what a contact card's QR code opens --------------------------------------------------


@router.get("/card/{code}")
async def card(code: str, request: Request) -> Response:
    """Staff scanning a card find the household; anyone else (a family member's phone)
    learns how to order for them: the hotline and the code to read out."""
    code = re.sub(r"[^A-Za-z0-9]", "", code)[:12].upper()
    try:
        await person(request)
    except (SignInNeeded, Unavailable):
        return page(request, "card.html", None, code=code)
    return RedirectResponse(f"/hotline?{urlencode({'q': code})}", status_code=303)


# --- hotline -------------------------------------------------------------------------------


@router.get("/hotline")
async def hotline(
    request: Request,
    who: Who,
    services: Services,
    q: Annotated[str, Query(max_length=30)] = "",
) -> HTMLResponse:
    found: list[dict[str, Any]] = []
    problem = None
    q = q.strip()
    if q:
        by = lookup_of(q)
        try:
            result = await services.get(
                who, "orders", f"/v1/communities/{who.community_id}/households", **by
            )
            found = [h for h in result["households"] if who.sees_grid(h["grid_id"])]
        except Refused as refused:  # a misheard card code: say so, and ask again
            problem = refused.said(language(request))
    return page(
        request,
        "hotline.html",
        who,
        q=q,
        found=found,
        problem=problem,
        categories=CATEGORIES,
        key=uuid.uuid4().hex,  # one order per form shown, however often it is submitted
    )


@router.post("/hotline/orders", dependencies=[Posted])
async def hotline_order(
    who: Who,
    services: Services,
    household_id: Annotated[str, Form(pattern=ID)],
    category: Annotated[str, Form()],
    items: Annotated[str, Form(max_length=2000)],
    key: Annotated[str, Form(pattern=r"^[a-f0-9]{32}$")],
    priority: Annotated[str, Form(max_length=3)] = "",
) -> Response:
    body: dict[str, Any] = {
        "household_id": household_id,
        "category": category,
        "items": items,
        "channel": "hotline",
    }
    if priority.strip():
        value = whole_number(priority)
        if value is None:
            return back("/hotline", "priority: a whole number from 0 to 100")
        body["priority"] = value
    try:
        household = await services.get(who, "orders", f"/v1/households/{household_id}")
        if not who.sees_grid(household["grid_id"]):
            raise NotYours
        order = await services.post(
            who, "orders", "/v1/orders", json=body, headers={"Idempotency-Key": f"console-{key}"}
        )
    except Refused as refused:
        return back("/hotline", refused.detail, refused)
    except (Queued, Unavailable) as exc:
        return back("/hotline", "queued" if isinstance(exc, Queued) else "unavailable")
    return back(f"/orders/{order['order_id']}", "done")


# --- queues that need a person -------------------------------------------------------------


@router.get("/queues")
async def queues(request: Request, who: Who, services: Services) -> HTMLResponse:
    grid = {"grid_id": who.grid_id} if who.grid_id else {}
    held, failed, board, calls, alarms = await asyncio.gather(
        services.get(who, "orders", "/v1/orders", status="held", limit=500, **grid),
        services.get(who, "orders", "/v1/orders", status="failed", limit=500, **grid),
        services.get(who, "dispatch", "/v1/tasks"),
        services.get(who, "notify", "/v1/call-list"),
        services.get(who, "notify", "/v1/alarms"),
    )
    escalated = [
        t
        for t in board["tasks"]
        if (t["escalated"] or t.get("late"))
        and t["state"] == "waiting"
        and who.sees_grid(t["grid_id"])
    ]
    return page(
        request,
        "queues.html",
        who,
        held=held["orders"],
        failed=failed["orders"],
        escalated=escalated,
        on_duty=board["on_duty"],
        calls=[c for c in calls["households"] if who.sees_grid(c.get("grid_id"))],
        alarms=alarms["alarms"],
    )


async def visible_order(services: Upstream, who: Person, order_id: str) -> dict[str, Any]:
    try:
        order: dict[str, Any] = await services.get(who, "orders", f"/v1/orders/{order_id}")
    except Refused as refused:
        # Orders keeps a grid worker to their grid (another grid's order is not found):
        # said as the console says it.
        if who.grid_id is not None and refused.status == 404:
            raise NotYours from None
        raise
    if not who.sees_grid(order["grid_id"]):
        raise NotYours
    return order


def order_action(
    verb: str, method: str = "POST", body: Callable[[dict[str, str]], Any] | None = None
) -> Callable[..., Awaitable[Response]]:
    async def action(order_id: str, request: Request, who: Who, services: Services) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}

        async def call() -> None:
            await visible_order(services, who, order_id)
            extra = {"json": body(form)} if body else {}
            await services.call(who, method, "orders", f"/v1/orders/{order_id}/{verb}", **extra)

        return await act(on_console(form.get("back", "/queues"), "/queues"), call())

    return action


def lookup_of(q: str) -> dict[str, str]:
    """What the hotline box holds: a phone (7+ digits, as people write them) or a card
    code (six characters, which may all be digits: 3, 4, 7 and 9 are in its alphabet)."""
    digits = re.sub(r"[\s-]", "", unicodedata.normalize("NFKC", q))  # "１３９…" typed wide
    number = digits.removeprefix("+")
    if number.isascii() and number.isdigit() and len(number) >= 7:
        return {"phone": digits}
    return {"card_code": q}


def whole_number(text: str) -> int | None:
    """Digits as typed ("５０" on a Chinese keyboard is 50); None for anything else ("²" is
    a digit to ``isdigit`` but no number to ``int``)."""
    text = text.strip()
    return int(text) if text.isdecimal() else None


def priority_body(form: dict[str, str]) -> dict[str, int]:
    value = whole_number(form.get("priority", ""))
    return {"priority": -1 if value is None else value}  # the service says why not


for verb, method, body in (
    ("accept", "POST", None),
    ("cancel", "POST", lambda form: {"reason": form.get("reason") or "cancelled by staff"}),
    ("reopen", "POST", None),
    ("priority", "PUT", priority_body),
):
    router.add_api_route(
        f"/orders/{{order_id}}/{verb}",
        order_action(verb, method, body),
        methods=["POST"],
        dependencies=[Posted],
    )


@router.post("/tasks/{order_id}/offer-again", dependencies=[Posted])
async def offer_again(order_id: str, who: Who, services: Services) -> Response:
    async def call() -> None:
        await visible_order(services, who, order_id)
        await services.post(who, "dispatch", f"/v1/tasks/{order_id}/offer-again")

    return await act("/queues", call())


@router.post("/tasks/{order_id}/offer-to", dependencies=[Posted])
async def offer_to(
    order_id: str,
    who: Who,
    services: Services,
    volunteer_id: Annotated[str, Form(pattern=ID)],
) -> Response:
    async def call() -> None:
        await visible_order(services, who, order_id)
        await services.post(
            who, "dispatch", f"/v1/tasks/{order_id}/offer-to", json={"volunteer_id": volunteer_id}
        )

    return await act("/queues", call())


@router.post("/alarms/{alarm_id}/ack", dependencies=[Posted])
async def take_alarm(alarm_id: str, who: Who, services: Services) -> Response:
    return await act("/queues", services.post(who, "notify", f"/v1/alarms/{alarm_id}/ack"))


@router.post("/call-list/{entry_id}/done", dependencies=[Posted])
async def call_done(entry_id: str, who: Who, services: Services) -> Response:
    return await act("/queues", services.post(who, "notify", f"/v1/call-list/{entry_id}/done"))


@router.post("/call-list/households/{household_id}/done", dependencies=[Posted])
async def household_called(
    household_id: str,
    who: Who,
    services: Services,
    upto: Annotated[str, Form(min_length=1, max_length=200)],
) -> Response:
    path = f"/v1/call-list/households/{household_id}/done"
    return await act("/queues", services.post(who, "notify", path, json={"upto": upto}))


# --- volunteers ----------------------------------------------------------------------------


def today(day: date | None, who: Person) -> date:
    """The day asked for, else today in the community's own clock (not UTC's)."""
    if day is not None:
        return day
    return datetime.now(CLOCKS.get(who.community_id, (BEIJING, 0.0))[0]).date()


async def approved_cadres(services: Upstream, who: Person) -> list[dict[str, Any]]:
    found = await services.get(who, "volunteers", "/v1/volunteers", status="approved", limit=500)
    return sorted(found["volunteers"], key=lambda v: v["name"])


def attendance(cadres: list[dict[str, Any]], day: date) -> list[dict[str, Any]]:
    key = day.isoformat()
    return [
        {"volunteer_id": v["volunteer_id"], "name": v["name"], "hours": v["hours_by_day"][key]}
        for v in cadres
        if v.get("hours_by_day", {}).get(key)
    ]


@router.get("/volunteers")
async def volunteers(
    request: Request, who: StaffWho, services: Services, day: date | None = None
) -> HTMLResponse:
    pending, cadres = await asyncio.gather(
        services.get(who, "volunteers", "/v1/volunteers", status="pending", limit=500),
        approved_cadres(services, who),
    )
    return page(
        request,
        "volunteers.html",
        who,
        pending=pending["volunteers"],
        on_duty=[v for v in cadres if v["on_duty"]],
        day=today(day, who),
        attendance=attendance(cadres, today(day, who)),
    )


@router.post("/volunteers/{volunteer_id}/approve", dependencies=[Posted])
async def approve(volunteer_id: str, who: StaffWho, services: Services) -> Response:
    return await act(
        "/volunteers", services.post(who, "volunteers", f"/v1/volunteers/{volunteer_id}/approve")
    )


def csv_download(name: str, rows: list[list[Any]]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([f"'{c}" if isinstance(c, str) and FORMULA.match(c) else c for c in row])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/volunteers/hours.csv")
async def hours_csv(who: StaffWho, services: Services, day: date | None = None) -> Response:
    rows = attendance(await approved_cadres(services, who), today(day, who))
    return csv_download(
        f"hours-{who.community_id}-{today(day, who)}.csv",
        [["day", "volunteer_id", "name", "hours"]]
        + [[today(day, who).isoformat(), r["volunteer_id"], r["name"], r["hours"]] for r in rows],
    )


# --- the daily report ----------------------------------------------------------------------


async def daily(services: Upstream, who: Person, day: date) -> dict[str, Any]:
    figures, cadres = await asyncio.gather(
        services.get(
            who, "orders", f"/v1/communities/{who.community_id}/report", day=day.isoformat()
        ),
        approved_cadres(services, who),
    )
    figures["volunteer_hours"] = round(sum(r["hours"] for r in attendance(cadres, day)), 2)
    return figures  # type: ignore[no-any-return]


def report_rows(figures: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = [["figure", "value"]]
    for key in ("orders_placed", "delivered"):
        rows.append([key, figures[key]])
    for key, value in figures["delivered_within"].items():
        rows.append([f"delivered_{key}", value])
    for key in ("escalations", "households_served", "no_smartphone_households_served"):
        rows.append([key, figures[key]])
    rows.append(["volunteer_hours", figures["volunteer_hours"]])
    for status, n in figures["orders_by_status"].items():
        rows.append([f"status:{status}", n])
    for category, statuses in figures["orders_by_category"].items():
        for status, n in statuses.items():
            rows.append([f"category:{category}:{status}", n])
    for key, value in (figures.get("gate") or {}).items():
        if key != "not_as_ordered":
            rows.append([f"gate:{key}", value])
    return rows


@router.get("/report")
async def report(
    request: Request, who: StaffWho, services: Services, day: date | None = None
) -> HTMLResponse:
    return page(
        request,
        "report.html",
        who,
        day=today(day, who),
        f=(figures := await daily(services, who, today(day, who))),
        # one scale for every grid's drawing, so the grids compare at a glance
        peak=max(
            (n for g in figures["by_hour"].values() for c in g.values() for n in c), default=1
        ),
    )


@router.get("/report.csv")
async def report_csv(who: StaffWho, services: Services, day: date | None = None) -> Response:
    figures = await daily(services, who, today(day, who))
    return csv_download(f"report-{who.community_id}-{today(day, who)}.csv", report_rows(figures))


# --- the gate (外围派单) ---------------------------------------------------------------------


@router.get("/gate")
async def gate(request: Request, who: Who, services: Services) -> HTMLResponse:
    queue = await services.get(who, "orders", "/v1/gate/queue")
    buildings = queue["buildings"]
    suppliers: list[dict[str, Any]] = []
    supplier_orders: list[dict[str, Any]] = []
    if not who.grid_id:  # suppliers are the office's
        found, sent = await services.gather(
            services.get(who, "orders", "/v1/suppliers"),
            services.get(who, "orders", "/v1/supplier-orders"),
        )
        suppliers, supplier_orders = found["suppliers"], sent["supplier_orders"][:20]
    return page(
        request,
        "gate.html",
        who,
        buildings=buildings,
        waiting=sum(len(b["parcels"]) for b in buildings),
        suppliers=suppliers,
        supplier_orders=supplier_orders,
    )


@router.post("/gate/scans", dependencies=[Posted])
async def gate_scan(
    who: Who,
    services: Services,
    code: Annotated[str, Form(min_length=1, max_length=200)],
    condition: Annotated[str, Form(pattern=r"^(ok|short|substituted|damaged)$")] = "ok",
    note: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    body = {"code": code, "condition": condition, "note": note.strip() or None}
    return await act("/gate", services.post(who, "orders", "/v1/gate/scans", json=body))


@router.post("/supplier-orders", dependencies=[Posted])
async def cut_off(
    who: StaffWho, services: Services, supplier_id: Annotated[str, Form(pattern=ID)]
) -> Response:
    body = {"supplier_id": supplier_id}
    return await act("/gate", services.post(who, "orders", "/v1/supplier-orders", json=body))


@router.post("/suppliers/{supplier_id}/{intake}", dependencies=[Posted])
async def supplier_intake(
    supplier_id: Annotated[str, PathParam(pattern=ID)],
    intake: Annotated[str, PathParam(pattern=r"^(suspend|resume)$")],
    who: StaffWho,
    services: Services,
    reason: Annotated[str, Form(min_length=2, max_length=300)],
) -> Response:
    path = f"/v1/suppliers/{supplier_id}/{intake}"
    return await act("/gate", services.post(who, "orders", path, json={"reason": reason}))


@router.get("/supplier-orders/{supplier_order_id}.csv")
async def supplier_order_csv(
    supplier_order_id: Annotated[str, PathParam(pattern=ID)], who: StaffWho, services: Services
) -> Response:
    return await passed_file(who, services, f"/v1/supplier-orders/{supplier_order_id}.csv")


@router.get("/supplier-orders/{supplier_order_id}/labels.pdf")
async def supplier_order_labels(
    supplier_order_id: Annotated[str, PathParam(pattern=ID)], who: StaffWho, services: Services
) -> Response:
    return await passed_file(who, services, f"/v1/supplier-orders/{supplier_order_id}/labels.pdf")


async def passed_file(
    who: Person,
    services: Upstream,
    path: str,
    service: str = "orders",
    headers: dict[str, str] | None = None,
) -> Response:
    """A file a service makes (a CSV, a PDF, a photo), fetched with the person's token."""
    found = await services.fetch(who, "GET", service, path)
    kept = {k: v for k, v in found.headers.items() if k.lower() == "content-disposition"}
    return Response(
        found.content,
        media_type=found.headers.get("content-type"),
        headers={**kept, **(headers or {})},
    )


# --- door-knock campaigns -------------------------------------------------------------------


@router.get("/campaigns")
async def campaign_list(request: Request, who: Who, services: Services) -> HTMLResponse:
    found = await services.get(who, "orders", "/v1/campaigns")
    return page(request, "campaigns.html", who, campaigns=found["campaigns"])


@router.post("/campaigns", dependencies=[Posted])
async def start_campaign(
    who: StaffWho,
    services: Services,
    title: Annotated[str, Form(max_length=200)],
    revisit_after_minutes: Annotated[int, Form(ge=0, le=7 * 24 * 60)] = 120,
) -> Response:
    body = {"title": title, "revisit_after_seconds": revisit_after_minutes * 60}
    try:
        started = await services.post(who, "orders", "/v1/campaigns", json=body)
    except Refused as refused:
        return back("/campaigns", refused.detail, refused)
    except (Queued, Unavailable) as exc:
        return back("/campaigns", "queued" if isinstance(exc, Queued) else "unavailable")
    return back(f"/campaigns/{started['campaign_id']}", "done")


@router.get("/campaigns/{campaign_id}")
async def campaign_page(
    campaign_id: str, request: Request, who: Who, services: Services
) -> HTMLResponse:
    grid = {"grid_id": who.grid_id} if who.grid_id else {}
    path = f"/v1/campaigns/{campaign_id}"
    campaign, exceptions, walks, board = await asyncio.gather(
        services.get(who, "orders", path),
        services.get(who, "orders", f"{path}/exceptions", **grid),
        services.get(who, "orders", f"{path}/walk-lists", **grid),
        services.get(who, "dispatch", "/v1/tasks"),
    )
    grids = {g: figures for g, figures in campaign["coverage"]["grids"].items() if who.sees_grid(g)}
    lists = [
        {
            **{k: v for k, v in walk.items() if k != "doors"},
            "doors": len(walk["doors"]),
            "done": sum(d["state"] != "not_yet" for d in walk["doors"]),
        }
        for walk in walks["walk_lists"]
    ]
    return page(
        request,
        "campaign.html",
        who,
        campaign=campaign,
        grids=grids,
        exceptions=exceptions,
        lists=lists,
        on_duty=[c for c in board["on_duty"] if who.sees_grid(c["grid_id"])],
    )


@router.post("/campaigns/{campaign_id}/walk-lists/{list_id}/give", dependencies=[Posted])
async def give_walk_list(
    campaign_id: str,
    list_id: str,
    who: Who,
    services: Services,
    volunteer_id: Annotated[str, Form(pattern=ID)],
) -> Response:
    path = f"/v1/campaigns/{campaign_id}/walk-lists/{list_id}/take"
    call = services.post(who, "orders", path, json={"volunteer_id": volunteer_id})
    return await act(f"/campaigns/{campaign_id}", call)


@router.post("/campaigns/{campaign_id}/households/{household_id}/hand-over", dependencies=[Posted])
async def hand_over(campaign_id: str, household_id: str, who: Who, services: Services) -> Response:
    path = f"/v1/campaigns/{campaign_id}/households/{household_id}/hand-over"
    return await act(f"/campaigns/{campaign_id}", services.post(who, "orders", path))


@router.post("/campaigns/{campaign_id}/close", dependencies=[Posted])
async def close_campaign(
    campaign_id: str,
    who: StaffWho,
    services: Services,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    body = {"reason": reason.strip()} if reason.strip() else None
    path = f"/v1/campaigns/{campaign_id}/close"
    return await act(f"/campaigns/{campaign_id}", services.post(who, "orders", path, json=body))


# --- an order, and anyone's audit trail ------------------------------------------------------


async def trail(services: Upstream, who: Person, subject: str) -> list[dict[str, Any]]:
    parts = await asyncio.gather(
        *(
            services.get(who, service, "/v1/audit", subject=subject)
            for service in ("orders", "volunteers", "dispatch")
        )
    )
    steps = [
        {**step, "service": service}
        for service, part in zip(("orders", "volunteers", "dispatch"), parts, strict=True)
        for step in part["steps"]
    ]
    return sorted(steps, key=lambda s: s["at"])


@router.get("/orders/{order_id}")
async def order_page(order_id: str, request: Request, who: Who, services: Services) -> HTMLResponse:
    order = await visible_order(services, who, order_id)
    steps = await trail(services, who, f"order/{order_id}")
    return page(request, "order.html", who, order=order, steps=steps, subject=f"order/{order_id}")


@router.get("/photos/{photo_id}")
async def delivery_photo(
    photo_id: Annotated[str, PathParam(pattern=r"^[0-9a-f-]{36}$")], who: Who, services: Services
) -> Response:
    """A delivery photo from an order's trail, fetched with the person's own token:
    dispatch decides who may see it."""
    return await passed_file(
        who,
        services,
        f"/v1/photos/{photo_id}",
        "dispatch",
        {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/audit/{kind}/{item_id}")
async def audit_page(
    kind: str, item_id: str, request: Request, who: StaffWho, services: Services
) -> HTMLResponse:
    if kind not in ("order", "household", "volunteer", "campaign") or not re.match(ID, item_id):
        raise NotYours
    subject = f"{kind}/{item_id}"
    steps = await trail(services, who, subject)
    return page(request, "order.html", who, order=None, steps=steps, subject=subject)


def district_query(s: str | None, day: date | None) -> dict[str, str]:
    return {k: v for k, v in (("sub_district", s), ("day", day and day.isoformat())) if v}


SubDistrictName = Annotated[str | None, Query(min_length=1, max_length=64)]


@router.get("/district")
async def district(
    request: Request,
    who: Overseer,
    services: Services,
    s: SubDistrictName = None,
    day: date | None = None,
) -> HTMLResponse:
    """A sub-district's communities on one page, those in trouble first; cadres mobilised
    by work unit (on a day, or in total)."""
    seen, mobilised = await services.gather(
        services.get(who, "district", "/v1/overview", **district_query(s, None)),
        services.get(who, "district", "/v1/mobilisation", **district_query(s, day)),
    )
    return page(
        request,
        "district.html",
        who,
        seen=seen,
        units=mobilised["work_units"],
        day=day,
        chosen=s,
        csv_query=urlencode(district_query(s, day)),
    )


@router.get("/district/mobilisation.csv")
async def district_csv(
    request: Request,
    who: Overseer,
    services: Services,
    s: SubDistrictName = None,
    day: date | None = None,
) -> Response:
    found = await services.get(who, "district", "/v1/mobilisation", **district_query(s, day))
    t = words(language(request))
    rows: list[list[Any]] = [
        [
            t["work_unit"],
            t["cadres"],
            t["communities"],
            t["reported_to"],
            t["hours"],
            t["tasks_done"],
        ]
    ]
    for unit in found["work_units"]:
        reported = "；".join(f"{name} {n}" for name, n in unit["cadres_by_community"].items())
        rows.append(
            [
                unit["work_unit"] or t["no_work_unit"],
                unit["cadres"],
                unit["communities"],
                reported,
                unit["hours"],
                unit["tasks_done"],
            ]
        )
    return csv_download(f"mobilisation-{day.isoformat() if day else 'total'}.csv", rows)
