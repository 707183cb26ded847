"""HTTP API of the orders service (under /v1): validate, authorise, send one command to the
community's owner, answer with its outcome. Reads come from the database, and staff's
order list from the owner's live documents where this instance owns the community."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import (
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)
from pymongo.asynchronous.database import AsyncDatabase
from starlette.concurrency import run_in_threadpool

from services.orders import campaigns, cards, domain, report, supply
from services.orders.views import household_view, newest_orders, order_view
from shared.api import Commands, Db, IdempotencyKey, StrictBody, answer, request_hash
from shared.auth import (
    CurrentPrincipal,
    Office,
    Ops,
    Principal,
    ResidentOrOffice,
    Role,
    Staff,
    StaffOrOps,
    require,
    require_community,
)
from shared.commands import CommandSender, new_command_id
from shared.contracts import orders as o
from shared.http import Problem

router = APIRouter(prefix="/v1")

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_CSV_BYTES = 2_000_000
IMPORT_CHUNK = 250  # households per command
CSV_EXAMPLE = (
    "compound,building,unit,room,grid,phone,flags\n"
    "Datong Garden,3,2,401,g3,13912345678,elderly_alone;no_smartphone\n"
)


# --- communities -------------------------------------------------------------------------


class GridIn(StrictBody):
    grid_id: str = Field(pattern=SLUG, examples=["g3"])
    name: str = Field(min_length=1, max_length=100, examples=["Grid 3"])
    grid_worker: str = Field(min_length=1, max_length=100, examples=["Wang Fang"])
    grid_worker_phone: str = Field(pattern=domain.PHONE.pattern, examples=["13800000003"])
    neighbours: list[str] = Field(default_factory=list, max_length=20, examples=[["g2", "g4"]])


class CommunityIn(StrictBody):
    community_id: str = Field(pattern=SLUG, examples=["datong"])
    name: str = Field(min_length=1, max_length=100, examples=["Datong community"])
    grids: list[GridIn] = Field(min_length=1, max_length=200)
    policy: o.CommunityPolicy = Field(default_factory=o.CommunityPolicy)
    hotline: str | None = Field(
        default=None,
        pattern=domain.PHONE.pattern,
        examples=["02812345678"],
        description="The community's hotline, printed on every contact card",
    )
    sub_district: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        examples=["南关街道"],
        description="The sub-district (街道) it belongs to: that sub-district's view sees it",
    )

    @model_validator(mode="after")
    def neighbours_exist(self) -> CommunityIn:
        ids = [g.grid_id for g in self.grids]
        if len(set(ids)) != len(ids):
            raise ValueError("grid ids must be unique")
        for grid in self.grids:
            unknown = set(grid.neighbours) - set(ids)
            if unknown:
                raise ValueError(f"grid {grid.grid_id}: unknown neighbours {sorted(unknown)}")
        return self


@router.post(
    "/communities",
    status_code=201,
    tags=["communities"],
    summary="Create or redefine a community (ops)",
)
async def define_community(body: CommunityIn, principal: Ops, commands: Commands) -> JSONResponse:
    command = o.DefineCommunity(
        command_id=new_command_id(),
        actor=principal.subject,
        community_id=body.community_id,
        name=body.name,
        grids=[o.Grid(**g.model_dump()) for g in body.grids],
        policy=body.policy,
        hotline=body.hotline,
        sub_district=o.sub_district_name(body.sub_district),
    )
    return answer(await commands.send(body.community_id, command))


async def community_or_404(
    database: AsyncDatabase[dict[str, Any]], community_id: str
) -> dict[str, Any]:
    doc = await database["communities"].find_one({"_id": community_id})
    if doc is None:
        raise Problem(404, "Not found", f"no community {community_id!r}")
    return doc


@router.get("/communities/{community_id}", tags=["communities"])
async def get_community(
    community_id: str, principal: CurrentPrincipal, database: Db
) -> dict[str, Any]:
    require(principal, Role.staff, Role.grid_worker, Role.ops)
    require_community(principal, community_id)
    doc = await community_or_404(database, community_id)
    doc["community_id"] = doc.pop("_id")
    doc.pop("_n", None)  # the read model's version: internal
    doc.pop("updated_at", None)
    return doc


@router.get(
    "/communities/{community_id}/report",
    tags=["communities"],
    summary="The day's figures the office reports upward (staff of it, ops)",
)
async def daily_report(
    community_id: str,
    request: Request,
    principal: CurrentPrincipal,
    database: Db,
    day: Annotated[
        str | None,
        Query(
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            description="The community's own day, YYYY-MM-DD; today there if left out",
        ),
    ] = None,
) -> dict[str, Any]:
    require(principal, Role.staff, Role.ops)
    require_community(principal, community_id)
    community = await community_or_404(database, community_id)
    clock = o.CommunityPolicy.model_validate(community.get("policy") or {}).clock()
    try:
        wanted = date.fromisoformat(day) if day else datetime.now(clock).date()
    except ValueError:
        raise Problem(422, "Invalid request", f"no such day: {day}", kind="validation") from None
    book = await request.app.state.owner.settled(community_id)
    if book is not None:
        orders = list(book.values("orders"))
        parcels = list(book.values(supply.PARCELS))
        suppliers = list(book.values(supply.SUPPLIERS))
    else:
        mine = {"community_id": community_id}
        orders = await database["orders"].find(mine).to_list()
        parcels = await database[supply.PARCELS].find(mine).to_list()
        suppliers = await database[supply.SUPPLIERS].find(mine).to_list()
    names = {s["_id"]: s["name"] for s in suppliers}
    return {
        **report.daily(orders, wanted, clock),
        "gate": supply.gate_figures(parcels, wanted, clock, names),
    }


# --- households --------------------------------------------------------------------------


class AddressIn(StrictBody):
    compound: str = Field(min_length=1, max_length=domain.MAX_FIELD, examples=["Datong Garden"])
    building: str = Field(min_length=1, max_length=domain.MAX_FIELD, examples=["3"])
    unit: str = Field(min_length=1, max_length=domain.MAX_FIELD, examples=["2"])
    room: str = Field(min_length=1, max_length=domain.MAX_FIELD, examples=["401"])


class PhonesIn(StrictBody):
    """A household's phones: its own, and relatives' who sign in for it too."""

    phone: str | None = Field(
        default=None,
        max_length=30,
        examples=["13912345678"],
        description="Optional: a household without a phone is reached through its grid worker",
    )
    relative_phones: list[str] = Field(
        default_factory=list,
        max_length=domain.RELATIVES,
        examples=[["13800000001"]],
        description="A relative's numbers (outside, say): they sign in for the household too",
    )

    @field_validator("phone")
    @classmethod
    def phone_shape(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        phone = domain.normalise_phone(value)
        if not domain.PHONE.match(phone):
            raise ValueError("phone must be 7 to 15 digits, optionally starting with +")
        return phone

    @field_validator("relative_phones")
    @classmethod
    def relatives_shape(cls, value: list[str]) -> list[str]:
        phones = domain.phones_in(";".join(v for v in value if v.strip()))
        if phones is None or any(len(v) > 30 for v in value):
            raise ValueError("each must be 7 to 15 digits, optionally starting with +")
        return phones


class HouseholdIn(PhonesIn):
    address: AddressIn
    grid_id: str = Field(pattern=SLUG, examples=["g3"])
    flags: list[o.HouseholdFlag] = Field(
        default_factory=list, examples=[["elderly_alone", "no_smartphone"]]
    )


def staff_of(principal: Principal, community_id: str) -> None:
    require(principal, Role.staff, Role.ops)
    require_community(principal, community_id)


def office_of(principal: Principal, community_id: str) -> None:
    """Staff (or ops) of the community, or one of its grid workers (who see their grid)."""
    require(principal, Role.staff, Role.grid_worker, Role.ops)
    require_community(principal, community_id)


def as_staff(principal: Principal) -> str:
    """The role a command names: a grid worker acts as staff, for their grid."""
    return Role.staff.value if principal.role is Role.grid_worker else principal.role.value


@router.post(
    "/communities/{community_id}/households",
    status_code=201,
    tags=["households"],
    summary="Register one household (staff)",
)
async def register_household(
    community_id: str,
    body: HouseholdIn,
    principal: StaffOrOps,
    commands: Commands,
    database: Db,
) -> JSONResponse:
    staff_of(principal, community_id)
    community = await community_or_404(database, community_id)
    if body.grid_id not in {g["grid_id"] for g in community["grids"]}:
        raise Problem(
            422,
            "Invalid request",
            f"unknown grid {body.grid_id!r}",
            kind="validation",
            errors=[{"field": "grid_id", "message": "unknown grid", "type": "value_error"}],
        )
    row = o.HouseholdInput(
        line=0,
        address=o.Address(**body.address.model_dump()),
        grid_id=body.grid_id,
        phone=body.phone,
        flags=body.flags,
        relative_phones=body.relative_phones,
    )
    command = o.RegisterHouseholds(
        command_id=new_command_id(), actor=principal.subject, households=[row]
    )
    outcome = await commands.send(community_id, command)
    result = outcome.unwrap()
    if outcome.status == 202:
        return JSONResponse(result, status_code=202)
    if result.get("rejected"):
        raise Problem(409, "Already registered", result["rejected"][0]["reason"])
    # The same household registered again (a retry after a timeout): it, as it is.
    return JSONResponse(result["household"], status_code=200 if result.get("already") else 201)


@router.post(
    "/communities/{community_id}/households/import",
    tags=["households"],
    summary="Bulk import households from CSV (staff)",
    description=f"CSV with a header row: {', '.join(domain.CSV_COLUMNS)}; flags separated by ';'. "
    "Good rows are imported; each bad row is reported by line with its reason.",
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": CSV_EXAMPLE,
                }
            }
        }
    },
)
async def import_households(
    community_id: str,
    request: Request,
    principal: CurrentPrincipal,
    commands: Commands,
    database: Db,
) -> JSONResponse:
    staff_of(principal, community_id)
    community = await community_or_404(database, community_id)
    raw = await request.body()  # at most MAX_CSV_BYTES: the gate (shared.edge) saw to it
    grids = {g["grid_id"] for g in community["grids"]}
    try:
        # Off the event loop: thousands of rows would hold every other request back.
        parsed = await run_in_threadpool(
            domain.parse_households_csv, raw.decode("utf-8-sig"), grids
        )
    except (UnicodeDecodeError, domain.CsvHeaderError) as exc:
        raise Problem(422, "Invalid CSV", str(exc), kind="validation") from exc
    report = await imported_in_chunks(commands, community_id, principal, parsed)
    if report["pending"]:
        # Some chunks are not decided yet (or not even sent: the broker away). What is
        # said is exact; the same file sent again finishes it, doubling nothing (rows
        # already there come back under "already").
        status = (
            503
            if not (report["imported"] or report["already"])
            and all(p["status"] == "not sent" for p in report["pending"])
            else 202
        )
        return JSONResponse(report, status_code=status)
    if not (report["imported"] or report["already"]):
        return JSONResponse(
            {
                "type": "https://doorstep.dev/problems/validation",
                "title": "No household imported",
                "status": 422,
                "detail": "every row was rejected",
                **report,
            },
            status_code=422,
            media_type="application/problem+json",
        )
    return JSONResponse(report, status_code=201)


async def imported_in_chunks(
    commands: CommandSender, community_id: str, principal: Principal, parsed: domain.ParsedCsv
) -> dict[str, Any]:
    """Every chunk sent (one command each, one log entry of bounded size), then every
    answer awaited together: each row ends up imported, already there, rejected (with its
    reason) or pending (with its chunk's link), never unsaid."""
    chunks = [
        o.RegisterHouseholds(
            command_id=new_command_id(),
            actor=principal.subject,
            households=parsed.rows[start : start + IMPORT_CHUNK],
        )
        for start in range(0, len(parsed.rows), IMPORT_CHUNK)
    ]
    answers = await asyncio.gather(
        *(commands.send(community_id, chunk, wait_seconds=60) for chunk in chunks),
        return_exceptions=True,
    )
    imported: list[dict[str, Any]] = []
    already: list[dict[str, Any]] = []
    rejected = list(parsed.rejected)
    pending: list[dict[str, Any]] = []
    for chunk, answer_ in zip(chunks, answers, strict=True):
        lines = [row.line for row in chunk.households]
        if isinstance(answer_, Problem):  # not sent: the broker away
            pending.append({"lines": lines, "status": "not sent", "detail": answer_.detail})
        elif isinstance(answer_, BaseException):
            raise answer_
        elif answer_.status == 202:
            pending.append({"lines": lines, "status": "queued", **(answer_.body or {})})
        elif answer_.status >= 400:
            rejected += [{"line": line, "reason": answer_.detail} for line in lines]
        else:
            result = answer_.body or {}
            imported += result["imported"]
            already += result.get("already", [])
            rejected += result["rejected"]
    rejected.sort(key=lambda r: int(r["line"]))  # type: ignore[call-overload]
    return {
        "imported_count": len(imported),
        "already_count": len(already),
        "rejected_count": len(rejected),
        "pending_count": sum(len(p["lines"]) for p in pending),
        "imported": imported,
        "already": already,
        "rejected": rejected,
        "pending": pending,
    }


@router.get(
    "/communities/{community_id}/households",
    tags=["households"],
    summary="Find households by contact-card code or phone (staff)",
)
async def find_households(
    community_id: str,
    principal: CurrentPrincipal,
    database: Db,
    card_code: Annotated[str | None, Query(max_length=20)] = None,
    phone: Annotated[str | None, Query(max_length=30)] = None,
    grid_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    office_of(principal, community_id)
    query: dict[str, Any] = {"community_id": community_id}
    if card_code:
        code = domain.normalise_card_code(card_code)
        if not domain.card_code_fits(code):
            # A misheard character must not find the wrong household: say so instead.
            raise Problem(
                422,
                "Mistyped card code",
                f"{code!r} is not a card code (its check character does not fit); "
                "ask for it again, character by character",
                kind="validation",
            )
        query["card_code"] = code
    if phone:
        query["phone"] = domain.normalise_phone(phone)
    if grid_id:
        query["grid_id"] = grid_id
    if principal.role is Role.grid_worker:
        query["grid_id"] = principal.grid_id if grid_id in (None, principal.grid_id) else "-"
    docs = await database["households"].find(query).limit(limit).to_list()
    return {"households": [household_view(d) for d in docs]}


@router.post(
    "/households/{household_id}/card",
    tags=["households"],
    summary="Re-issue a lost contact card: a new code; the old one never matches again (staff)",
)
async def reissue_card(
    household_id: str, principal: Staff, commands: Commands, database: Db
) -> JSONResponse:
    doc = await database["households"].find_one({"_id": household_id}, {"community_id": 1})
    if doc is None or doc["community_id"] != principal.community_id:
        raise Problem(404, "Not found", "no such household in your community")
    command = o.ReissueCard(
        command_id=new_command_id(), actor=principal.subject, household_id=household_id
    )
    return answer(await commands.send(doc["community_id"], command))


@router.put(
    "/households/{household_id}/phones",
    tags=["households"],
    summary="Set a household's phones anew (staff): a phone left out no longer signs in for it",
)
async def set_phones(
    household_id: str, body: PhonesIn, principal: Staff, commands: Commands, database: Db
) -> JSONResponse:
    doc = await database["households"].find_one({"_id": household_id}, {"community_id": 1})
    if doc is None or doc["community_id"] != principal.community_id:
        raise Problem(404, "Not found", "no such household in your community")
    command = o.SetHouseholdPhones(
        command_id=new_command_id(),
        actor=principal.subject,
        household_id=household_id,
        phone=body.phone,
        relative_phones=body.relative_phones,
    )
    return answer(await commands.send(doc["community_id"], command))


@router.get(
    "/communities/{community_id}/cards.pdf",
    tags=["households"],
    summary="Printable contact cards: A4 sheets for a grid or the community, or one card (staff)",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "The cards"}},
)
async def contact_cards(
    community_id: str,
    request: Request,
    principal: CurrentPrincipal,
    database: Db,
    grid_id: Annotated[str | None, Query(max_length=64)] = None,
    household_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    staff_of(principal, community_id)
    community = await community_or_404(database, community_id)
    query: dict[str, Any] = {"community_id": community_id}
    if grid_id:
        query["grid_id"] = grid_id
    if household_id:
        query["_id"] = household_id
    households = await database["households"].find(query).to_list()
    if household_id and not households:
        raise Problem(404, "Not found", "no such household in your community")
    grids = {g["grid_id"]: g for g in community["grids"]}
    base = request.app.state.card_url.rstrip("/")
    chosen = [
        cards.Card(
            card_code=h["card_code"],
            address=h["address_text"],
            grid=h["grid_id"],
            grid_worker=grids.get(h["grid_id"], {}).get("grid_worker", ""),
            grid_worker_phone=grids.get(h["grid_id"], {}).get("grid_worker_phone", ""),
            hotline=community.get("hotline"),
            url=f"{base}/{h['card_code']}",
        )
        for h in sorted(households, key=campaigns.walk_order)
    ]
    pdf = await run_in_threadpool(cards.render, chosen, community["name"], bool(household_id))
    scope = household_id or grid_id
    name = f"cards-{community_id}{f'-{scope}' if scope else ''}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/households/{household_id}", tags=["households"])
async def get_household(
    household_id: str, principal: CurrentPrincipal, database: Db
) -> dict[str, Any]:
    doc = await database["households"].find_one({"_id": household_id})
    visible = doc is not None and (
        (principal.role is Role.resident and principal.household_id == household_id)
        or (
            principal.role in (Role.staff, Role.grid_worker, Role.ops)
            and principal.may_see_community(doc["community_id"])
            and principal.sees_grid(doc["grid_id"])
        )
    )
    if not visible:
        raise Problem(404, "Not found", "no such household")
    return household_view(doc)  # type: ignore[arg-type]


# --- orders --------------------------------------------------------------------------------


class OrderIn(StrictBody):
    household_id: str | None = Field(
        default=None,
        max_length=64,
        description="Required for staff; residents order for their own household",
    )
    category: o.Category = Field(examples=["medicine"])
    items: str = Field(min_length=1, max_length=500, examples=["insulin, 2 boxes"])
    channel: str | None = Field(default=None, pattern=r"^(app|staff_proxy|hotline|group_chat)$")
    priority: StrictInt | None = Field(default=None, ge=0, le=100, description="Staff override")

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"category": "medicine", "items": "insulin, 2 boxes"}]},
    )


@router.post(
    "/orders",
    status_code=201,
    tags=["orders"],
    summary="Place an order (下单)",
    responses={
        201: {"description": "The order, as taken"},
        422: {"description": "Invalid, or Idempotency-Key reused with another body"},
    },
)
async def place_order(
    body: OrderIn,
    principal: ResidentOrOffice,
    commands: Commands,
    database: Db,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    if principal.role is Role.resident:
        if body.household_id not in (None, principal.household_id):
            raise Problem(403, "Forbidden", "residents order for their own household")
        if body.priority is not None or body.category is o.Category.transfer:
            raise Problem(403, "Forbidden", "only staff may set a priority or order a transfer")
        household_id = principal.household_id
        channel = body.channel or "app"
    else:
        if body.household_id is None:
            raise Problem(
                422,
                "Invalid request",
                "household_id is required when staff order",
                kind="validation",
                errors=[{"field": "household_id", "message": "Field required", "type": "missing"}],
            )
        household_id = body.household_id
        channel = body.channel or "staff_proxy"
        if principal.role is Role.grid_worker:  # their grid's households only
            household = await database["households"].find_one({"_id": household_id})
            if household is None or not principal.sees_grid(household["grid_id"]):
                raise Problem(404, "Not found", "no such household in your grid")
    assert household_id is not None and principal.community_id is not None
    # The household (in this community) and the Idempotency-Key are checked once, by the
    # owner: a read here would cost every order a round trip to answer what it decides.
    digest = request_hash(body)
    command = o.PlaceOrder(
        command_id=new_command_id(),
        actor=principal.subject,
        household_id=household_id,
        category=body.category,
        items=body.items,
        channel=channel,
        role=as_staff(principal),
        priority=body.priority,
        idempotency_key=idempotency_key,
        request_hash=digest,
    )
    return answer(await commands.send(principal.community_id, command))


async def visible_order(
    database: AsyncDatabase[dict[str, Any]], principal: Principal, order_id: str
) -> dict[str, Any]:
    """The order if this principal may see it; otherwise 404 (its existence is private)."""
    require(principal, Role.resident, Role.staff, Role.grid_worker, Role.ops)
    doc = await database["orders"].find_one({"_id": order_id})
    if doc is None:
        raise Problem(404, "Not found", "no such order")
    if principal.role is Role.resident and doc["household_id"] != principal.household_id:
        raise Problem(404, "Not found", "no such order")
    if not (
        principal.may_see_community(doc["community_id"]) and principal.sees_grid(doc["grid_id"])
    ):
        raise Problem(404, "Not found", "no such order")
    return doc


@router.get("/orders/{order_id}", tags=["orders"])
async def get_order(order_id: str, principal: CurrentPrincipal, database: Db) -> dict[str, Any]:
    # The resident sees the handoff code too: they give it to the volunteer at the door.
    return order_view(await visible_order(database, principal, order_id))


@router.get("/orders", tags=["orders"], summary="Orders you may see, newest first")
async def list_orders(
    request: Request,
    principal: CurrentPrincipal,
    database: Db,
    status: Annotated[str | None, Query(pattern=r"^[a-z_]+$")] = None,
    grid_id: Annotated[str | None, Query(max_length=64)] = None,
    community_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    require(principal, Role.resident, Role.staff, Role.grid_worker, Role.ops)
    query: dict[str, Any] = {}
    if principal.role is Role.resident:
        query["household_id"] = principal.household_id
    elif principal.role in (Role.staff, Role.grid_worker):
        query["community_id"] = principal.community_id
    elif community_id:
        query["community_id"] = community_id
    if status:
        query["status"] = status
    if grid_id:
        query["grid_id"] = grid_id
    if principal.role is Role.grid_worker:  # their own grid, whatever was asked
        query["grid_id"] = principal.grid_id if grid_id in (None, principal.grid_id) else "-"
    book = (
        await request.app.state.owner.settled(query["community_id"])
        if "community_id" in query
        else None
    )
    if book is not None:
        docs = newest_orders(book.newest_first(), query, limit)
    else:
        docs = await database["orders"].find(query).sort("placed_at", -1).limit(limit).to_list()
    return {"orders": [order_view(d) for d in docs]}


class CancelIn(StrictBody):
    reason: str | None = Field(default=None, max_length=300)


@router.post(
    "/orders/{order_id}/cancel",
    tags=["orders"],
    summary="Cancel (residents until pickup; staff any open order)",
)
async def cancel_order(
    order_id: str,
    principal: ResidentOrOffice,
    commands: Commands,
    database: Db,
    body: CancelIn | None = None,
) -> JSONResponse:
    doc = await visible_order(database, principal, order_id)
    command = o.CancelOrder(
        command_id=new_command_id(),
        actor=principal.subject,
        order_id=order_id,
        role=as_staff(principal),
        reason=body.reason if body else None,
    )
    return answer(await commands.send(doc["community_id"], command))


async def staff_order(
    database: AsyncDatabase[dict[str, Any]], principal: Principal, order_id: str
) -> dict[str, Any]:
    doc = await visible_order(database, principal, order_id)
    require(principal, Role.staff, Role.grid_worker)
    return doc


@router.post(
    "/orders/{order_id}/reopen",
    tags=["orders"],
    summary="Re-open a failed or cancelled order (staff)",
)
async def reopen_order(
    order_id: str, principal: CurrentPrincipal, commands: Commands, database: Db
) -> JSONResponse:
    doc = await staff_order(database, principal, order_id)
    command = o.ReopenOrder(command_id=new_command_id(), actor=principal.subject, order_id=order_id)
    return answer(await commands.send(doc["community_id"], command))


@router.post(
    "/orders/{order_id}/accept",
    tags=["orders"],
    summary="Take a held order into the queue (接单, staff)",
)
async def review_order(
    order_id: str, principal: CurrentPrincipal, commands: Commands, database: Db
) -> JSONResponse:
    doc = await staff_order(database, principal, order_id)
    command = o.ReviewOrder(command_id=new_command_id(), actor=principal.subject, order_id=order_id)
    return answer(await commands.send(doc["community_id"], command))


class PriorityIn(StrictBody):
    priority: StrictInt = Field(ge=0, le=100)


@router.put("/orders/{order_id}/priority", tags=["orders"], summary="Override the priority (staff)")
async def set_priority(
    order_id: str, body: PriorityIn, principal: Office, commands: Commands, database: Db
) -> JSONResponse:
    doc = await staff_order(database, principal, order_id)
    command = o.SetPriority(
        command_id=new_command_id(),
        actor=principal.subject,
        order_id=order_id,
        priority=body.priority,
    )
    return answer(await commands.send(doc["community_id"], command))
