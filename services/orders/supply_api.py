"""HTTP API of sourcing (外围派单, under /v1, in the orders service that owns it): staff
keep the community's suppliers, stop and resume their intake, and at a cut-off send each
one the consolidated order of what the community needs of it (JSON, and CSV to print or
forward). Writes are commands to the community's owner; reads its live documents where
this instance owns the community, else the database."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import Field, model_validator

from services.orders import labels, supply
from services.orders.book import ORDERS
from services.orders.supply import PARCELS, SUPPLIER_ORDERS, SUPPLIERS
from shared.api import Commands, Db, IdempotencyKey, StrictBody, answer, request_hash
from shared.auth import CurrentPrincipal, Principal, Role, Staff, VolunteerOrStaff, require
from shared.commands import new_command_id
from shared.contracts import supply as s
from shared.contracts.orders import Address, Category
from shared.http import Problem

router = APIRouter(prefix="/v1", tags=["sourcing"])
ID = r"^[A-Za-z0-9_-]{1,64}$"
Id = Annotated[str, Path(pattern=ID)]
PHONE = re.compile(r"^\+?[0-9]{7,15}$")


class SupplierIn(StrictBody):
    name: str = Field(min_length=1, max_length=100, examples=["大同生鲜超市"])
    kind: s.SupplierKind
    contact_name: str = Field(min_length=1, max_length=100)
    phone: str = Field(min_length=7, max_length=20, examples=["13912345678"])
    permit_number: str | None = Field(
        default=None, min_length=1, max_length=64, description="A group buy's permit (团购许可)"
    )
    serves: list[Category] = Field(min_length=1, max_length=2, examples=[["groceries"]])

    @model_validator(mode="after")
    def checked(self) -> SupplierIn:
        if not PHONE.match(self.phone):
            raise ValueError("phone must be 7 to 15 digits, optionally starting with +")
        outside = set(self.serves) - set(s.SOURCED)
        if outside:
            raise ValueError(
                f"a supplier serves {', '.join(c.value for c in s.SOURCED)}; "
                f"not {', '.join(sorted(c.value for c in outside))}"
            )
        if self.kind is s.SupplierKind.group_buy and not self.permit_number:
            raise ValueError("a group buy needs the permit number the office issued")
        return self


class IntakeIn(StrictBody):
    # Two characters say it in Chinese ("解封"): no English-sized minimum.
    reason: str = Field(min_length=2, max_length=300, examples=["a new case in building 7"])


class SupplierOrderIn(StrictBody):
    supplier_id: str = Field(pattern=ID)


Short = Annotated[str, Field(min_length=1, max_length=40)]


class AddressIn(StrictBody):
    compound: Short
    building: Short
    unit: Short
    room: Short


class ScanIn(StrictBody):
    code: str = Field(
        min_length=4, max_length=200, description="The label's code, typed or as its QR code reads"
    )
    condition: s.ParcelCondition = s.ParcelCondition.ok
    note: str | None = Field(default=None, max_length=300, examples=["two of five packs missing"])

    @model_validator(mode="after")
    def said_why(self) -> ScanIn:
        if self.condition is not s.ParcelCondition.ok and not self.note:
            raise ValueError("say what is short, substituted or damaged (note)")
        return self


class UnannouncedIn(StrictBody):
    address: AddressIn
    phone_last4: str = Field(pattern=r"^[0-9]{4}$", description="As written on the parcel")
    category: s.Category = s.Category.groceries
    note: str | None = Field(default=None, max_length=300)


class AnnounceIn(StrictBody):
    household_id: str | None = Field(default=None, pattern=ID, description="Staff: whose")
    from_name: str = Field(min_length=1, max_length=100, examples=["女儿 王丽"])
    items: str = Field(min_length=1, max_length=300, examples=["水果 一箱"])
    category: s.Category = s.Category.groceries


@router.post(
    "/gate/scans",
    summary="At the gate: a parcel's label scanned or typed — it is here (cadre, staff)",
)
async def scan(body: ScanIn, principal: VolunteerOrStaff, commands: Commands) -> JSONResponse:
    command = s.ScanParcel(
        command_id=new_command_id(), actor=principal.subject, **body.model_dump()
    )
    return answer(await commands.send(community_of(principal), command))


@router.post(
    "/gate/parcels",
    status_code=201,
    summary="At the gate: a parcel nobody announced, registered by its address (cadre, staff)",
)
async def unannounced(
    body: UnannouncedIn,
    principal: VolunteerOrStaff,
    commands: Commands,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    command = s.RegisterParcel(
        command_id=new_command_id(),
        actor=principal.subject,
        address=Address(**body.address.model_dump()),
        phone_last4=body.phone_last4,
        category=body.category,
        note=body.note,
        idempotency_key=idempotency_key,
        request_hash=request_hash(body),
    )
    return answer(await commands.send(community_of(principal), command))


@router.post(
    "/parcels",
    status_code=201,
    summary="A relative's parcel announced: expected at the gate (the household, staff)",
)
async def announce(
    body: AnnounceIn,
    principal: CurrentPrincipal,
    commands: Commands,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    require(principal, Role.resident, Role.staff)
    household_id = principal.household_id if principal.role is Role.resident else body.household_id
    if household_id is None:
        raise Problem(422, "Invalid request", "household_id: whose parcel it is", kind="validation")
    command = s.AnnounceParcel(
        command_id=new_command_id(),
        actor=principal.subject,
        household_id=household_id,
        from_name=body.from_name,
        items=body.items,
        category=body.category,
        idempotency_key=idempotency_key,
        request_hash=request_hash(body),
    )
    return answer(await commands.send(community_of(principal), command))


@router.get("/gate/queue", summary="Parcels at the gate, by building: medicine, then the oldest")
async def queue(request: Request, principal: VolunteerOrStaff, database: Db) -> dict[str, Any]:
    parcels = await documents(request, database, principal, PARCELS)
    waiting = {p["order_id"] for p in parcels if p["state"] == "at_gate"}
    orders = {
        o["_id"]: o
        for o in await documents(request, database, principal, ORDERS)
        if o["_id"] in waiting
    }
    return {"buildings": supply.gate_queue(parcels, orders)}


PARCEL_STATES = ("expected", "at_gate", "carried", "delivered")


@router.get("/parcels", summary="Every parcel and where it is (staff)")
async def parcels(
    request: Request, principal: Staff, database: Db, state: str | None = None
) -> dict[str, Any]:
    """Where each parcel is — expected, at the gate (back there with a reason if it could
    not be handed over), carried in, delivered: a parcel is always in exactly one place."""
    if state is not None and state not in PARCEL_STATES:
        raise Problem(
            422, "Invalid request", f"state: one of {', '.join(PARCEL_STATES)}", kind="validation"
        )
    found = await documents(request, database, principal, PARCELS)
    counts = {place: sum(1 for p in found if p["state"] == place) for place in PARCEL_STATES}
    counts["returned"] = sum(1 for p in found if p["state"] == "at_gate" and p.get("returned"))
    listed = [supply.parcel_view(p) for p in found if state is None or p["state"] == state]
    return {"counts": counts, "parcels": sorted(listed, key=lambda p: str(p["code"]))}


def community_of(principal: Principal) -> str:
    assert principal.community_id is not None  # a staff token names it
    return principal.community_id


@router.post("/suppliers", status_code=201, summary="Add a supplier (staff)")
async def add_supplier(body: SupplierIn, principal: Staff, commands: Commands) -> JSONResponse:
    command_id = new_command_id()
    command = s.DefineSupplier(
        command_id=command_id,
        actor=principal.subject,
        supplier_id="sup_" + command_id[:12],
        **body.model_dump(),
    )
    return answer(await commands.send(community_of(principal), command))


@router.put("/suppliers/{supplier_id}", summary="Change a supplier's details (staff)")
async def change_supplier(
    supplier_id: Id, body: SupplierIn, principal: Staff, commands: Commands, database: Db
) -> JSONResponse:
    await found(database, principal, SUPPLIERS, supplier_id)
    command = s.DefineSupplier(
        command_id=new_command_id(),
        actor=principal.subject,
        supplier_id=supplier_id,
        **body.model_dump(),
    )
    return answer(await commands.send(community_of(principal), command))


@router.post("/suppliers/{supplier_id}/suspend", summary="Stop a supplier's intake (staff)")
async def suspend(
    supplier_id: Id, body: IntakeIn, principal: Staff, commands: Commands
) -> JSONResponse:
    return await intake(supplier_id, False, body.reason, principal, commands)


@router.post("/suppliers/{supplier_id}/resume", summary="Take a supplier's goods again (staff)")
async def resume(
    supplier_id: Id, body: IntakeIn, principal: Staff, commands: Commands
) -> JSONResponse:
    return await intake(supplier_id, True, body.reason, principal, commands)


async def intake(
    supplier_id: str, open_: bool, reason: str, principal: Principal, commands: Commands
) -> JSONResponse:
    command = s.SetSupplierIntake(
        command_id=new_command_id(),
        actor=principal.subject,
        supplier_id=supplier_id,
        open=open_,
        reason=reason,
    )
    return answer(await commands.send(community_of(principal), command))


@router.get("/suppliers", summary="The community's suppliers (staff)")
async def suppliers(request: Request, principal: Staff, database: Db) -> dict[str, Any]:
    docs = await documents(request, database, principal, SUPPLIERS)
    return {"suppliers": [supply.supplier_view(d) for d in sorted(docs, key=lambda d: d["name"])]}


@router.post(
    "/supplier-orders",
    status_code=201,
    summary="Cut-off: order from a supplier all the community's accepted orders need of it",
)
async def send_supplier_order(
    body: SupplierOrderIn, principal: Staff, commands: Commands
) -> JSONResponse:
    command_id = new_command_id()
    command = s.SendSupplierOrder(
        command_id=command_id,
        actor=principal.subject,
        supplier_order_id="so_" + command_id[:12],
        supplier_id=body.supplier_id,
    )
    return answer(await commands.send(community_of(principal), command))


@router.get("/supplier-orders", summary="Supplier orders sent, newest first (staff)")
async def supplier_orders(request: Request, principal: Staff, database: Db) -> dict[str, Any]:
    docs = await documents(request, database, principal, SUPPLIER_ORDERS)
    newest = sorted(docs, key=lambda d: d["sent_at"], reverse=True)
    return {"supplier_orders": [supply.supplier_order_view(d) for d in newest]}


@router.get(
    "/supplier-orders/{supplier_order_id}.csv",
    summary="A supplier order as the supplier packs it: CSV (staff)",
    response_class=Response,
)
async def supplier_order_csv(supplier_order_id: Id, principal: Staff, database: Db) -> Response:
    doc = await found(database, principal, SUPPLIER_ORDERS, supplier_order_id)
    return Response(
        supply.supplier_order_csv(doc),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{supplier_order_id}.csv"'},
    )


@router.get(
    "/supplier-orders/{supplier_order_id}/labels.pdf",
    summary="The parcels' labels of a supplier order: A4 sheets of ten (staff)",
    response_class=Response,
)
async def labels_pdf(
    supplier_order_id: Id, request: Request, principal: Staff, database: Db
) -> Response:
    doc = await found(database, principal, SUPPLIER_ORDERS, supplier_order_id)
    codes = set(doc.get("parcels", []))
    parcels = [
        p for p in await documents(request, database, principal, PARCELS) if p["_id"] in codes
    ]
    return await labels_of(
        sorted(parcels, key=lambda p: p["address"]), principal, database, supplier_order_id
    )


@router.get(
    "/parcels/{code}/label.pdf",
    summary="One parcel's label, to write on or print (the household, staff)",
    response_class=Response,
)
async def label_pdf(
    code: Annotated[str, Path(pattern=r"^P[A-Z0-9]{7}$")],
    principal: CurrentPrincipal,
    database: Db,
) -> Response:
    require(principal, Role.resident, Role.staff)
    parcel = await found(database, principal, PARCELS, code)
    if principal.role is Role.resident and parcel["household_id"] != principal.household_id:
        raise Problem(404, "Not found", "no such parcel")
    return await labels_of([parcel], principal, database, code)


async def labels_of(
    parcels: list[dict[str, Any]], principal: Principal, database: Db, name: str
) -> Response:
    community = await database["communities"].find_one({"_id": community_of(principal)}) or {}
    chosen = [
        labels.Label(
            code=p["_id"],
            address=p["address"],
            phone_last4=p.get("phone_last4", ""),
            category=p["category"],
            items=p.get("items", ""),
            order_id=p["order_id"],
        )
        for p in parcels
    ]
    pdf = await run_in_threadpool(labels.render, chosen, community.get("name", ""))
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="labels-{name}.pdf"'},
    )


@router.get("/supplier-orders/{supplier_order_id}", summary="One supplier order (staff)")
async def supplier_order(supplier_order_id: Id, principal: Staff, database: Db) -> dict[str, Any]:
    return supply.supplier_order_view(
        await found(database, principal, SUPPLIER_ORDERS, supplier_order_id)
    )


async def documents(
    request: Request, database: Db, principal: Principal, kind: str
) -> list[dict[str, Any]]:
    community = community_of(principal)
    book = await request.app.state.owner.settled(community)
    if book is not None:
        return list(book.values(kind))
    return await database[kind].find({"community_id": community}).to_list()


async def found(database: Db, principal: Principal, kind: str, doc_id: str) -> dict[str, Any]:
    doc = await database[kind].find_one({"_id": doc_id, "community_id": community_of(principal)})
    if doc is None:
        raise Problem(404, "Not found", f"no such {kind.rstrip('s').replace('_', ' ')}")
    return doc
