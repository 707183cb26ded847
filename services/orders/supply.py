"""外围派单, sourcing — pure rules: the community's suppliers (a supermarket, a pharmacy, a
group buy with the office's permit), their intake opened and stopped, and the cut-off
that orders from one supplier everything the community's accepted orders need of it.

A supplier order consolidates: groceries are summed across households by what was asked
("蔬菜包 ×120"), so the supplier packs once; medicine stays per household (who, where,
what), as a pharmacy must dispense it. Each order is in at most one supplier order: the
next cut-off takes only what came in since."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from services.orders import domain
from services.orders.book import (
    COMMUNITIES,
    HOUSEHOLDS,
    ORDERS,
    Orderbook,
    first_request,
    open_order,
    order_id_for,
    remember_request,
)
from services.orders.domain import Status
from shared.contracts import supply as s
from shared.contracts.orders import Category
from shared.decision import Decision, Rejection
from shared.events import Event
from shared.outcome import Outcome

SUPPLIERS, SUPPLIER_ORDERS, PARCELS = "suppliers", "supplier_orders", "parcels"
# Taken and not yet on the way: what a cut-off orders from outside.
TO_SOURCE = frozenset({Status.accepted, Status.assigned})


def define_supplier(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, s.DefineSupplier)
    if book.get(COMMUNITIES, book.community_id) is None:
        raise Rejection(404, "no such community", "Not found")
    if cmd.kind is s.SupplierKind.group_buy and not cmd.permit_number:
        raise Rejection(
            422, "a group buy needs the permit number the office issued", "Invalid request"
        )
    before = book.get(SUPPLIERS, cmd.supplier_id) or {}
    supplier = book.put(
        SUPPLIERS,
        {
            **before,
            "_id": cmd.supplier_id,
            "name": cmd.name,
            "kind": cmd.kind.value,
            "contact_name": cmd.contact_name,
            "phone": cmd.phone,
            "permit_number": cmd.permit_number,
            "serves": [c.value for c in cmd.serves],
            "open": before.get("open", True),
            "defined_at": now,
        },
    )
    defined = s.SupplierDefined(
        supplier_id=cmd.supplier_id, name=cmd.name, kind=cmd.kind, serves=cmd.serves
    )
    return Decision([defined], Outcome.ok(supplier_view(supplier), 201 if not before else 200))


def set_intake(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, s.SetSupplierIntake)
    supplier = book.get(SUPPLIERS, cmd.supplier_id)
    if supplier is None:
        raise Rejection(404, f"no supplier {cmd.supplier_id!r}", "Not found")
    if supplier["open"] == cmd.open:
        return Decision([], Outcome.ok(supplier_view(supplier)))  # said twice: as it is
    change = {"open": cmd.open, "reason": cmd.reason, "at": now, "by": cmd.actor}
    supplier = book.put(
        SUPPLIERS,
        {**supplier, "open": cmd.open, "intake": [*supplier.get("intake", []), change][-20:]},
    )
    changed = s.SupplierIntakeChanged(supplier_id=cmd.supplier_id, open=cmd.open, reason=cmd.reason)
    return Decision([changed], Outcome.ok(supplier_view(supplier)))


def send_supplier_order(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, s.SendSupplierOrder)
    supplier = book.get(SUPPLIERS, cmd.supplier_id)
    if supplier is None:
        raise Rejection(404, f"no supplier {cmd.supplier_id!r}", "Not found")
    if not supplier["open"]:
        raise Rejection(409, f"{supplier['name']}'s intake is stopped", "Intake stopped")
    wanted = to_source(book.values(ORDERS), supplier["serves"])
    if not wanted:
        raise Rejection(409, "no accepted order needs this supplier's goods", "Nothing to order")
    households = {o["household_id"]: book.get(HOUSEHOLDS, o["household_id"]) for o in wanted}
    lines, medicine = consolidate(wanted, households)
    codes = []
    for wanted_order in wanted:
        code = expect_parcel(book, wanted_order, f"supplier:{supplier['_id']}", now)
        source = {
            "supplier_order_id": cmd.supplier_order_id,
            "supplier_id": supplier["_id"],
            "parcel": code,
        }
        current = book.get(ORDERS, wanted_order["_id"]) or wanted_order
        book.put(ORDERS, {**current, "sourcing": source})
        codes.append(code)
    order = book.put(
        SUPPLIER_ORDERS,
        {
            "_id": cmd.supplier_order_id,
            "supplier_id": supplier["_id"],
            "supplier_name": supplier["name"],
            "sent_at": now,
            "sent_by": cmd.actor,
            "order_ids": [o["_id"] for o in wanted],
            "parcels": codes,
            "lines": lines,
            "medicine": medicine,
        },
    )
    sent = s.SupplierOrderSent(
        supplier_order_id=cmd.supplier_order_id,
        supplier_id=supplier["_id"],
        supplier_name=supplier["name"],
        phone=supplier["phone"],
        order_ids=order["order_ids"],
        lines=len(lines) + len(medicine),
    )
    return Decision([sent], Outcome.ok(supplier_order_view(order), 201))


# --- parcels: expected, then at the gate ------------------------------------------------------
#
# One parcel per household order, packed by the supplier (or sent by a relative) with a label:
# the parcel's code (typed or scanned at the gate), the address, the last four digits of the
# household's phone. A parcel is in one place: expected, then at the gate.


def parcel_code(book: Orderbook, order_id: str) -> str:
    """The order's parcel code: derived from the order (the same on a redo), seven
    characters of the contact cards' alphabet and a check character, so a mistyped one
    does not fit; another salt where the community has it already."""
    for salt in range(100):
        digest = int(hashlib.sha256(f"{order_id}:{salt}".encode()).hexdigest(), 16)
        body = ""
        for _ in range(6):
            digest, i = divmod(digest, len(domain.CARD_ALPHABET))
            body += domain.CARD_ALPHABET[i]
        code = "P" + body + domain.check_character(body)
        there = book.get(PARCELS, code)  # the code is the parcel's id: one lookup
        if there is None or there["order_id"] == order_id:
            return code
    raise Rejection(409, "no parcel code is free", "Conflict")  # not in this universe


def parcel_code_of(raw: str) -> str:
    """What the gate typed or scanned (a QR code's text, a URL ending in the code, spaces,
    dashes, full-width letters) as a code."""
    last = unicodedata.normalize("NFKC", raw).strip().rstrip("/").split("/")[-1].split(":")[-1]
    return re.sub(r"[\s-]", "", last).upper()


def parcel_code_fits(code: str) -> bool:
    body = code[1:-1]
    return (
        len(code) == 8
        and code[0] == "P"
        and all(c in domain.CARD_ALPHABET for c in code[1:])
        and domain.check_character(body) == code[-1]
    )


def expect_parcel(book: Orderbook, order: dict[str, Any], source: str, now: datetime) -> str:
    household = book.get(HOUSEHOLDS, order["household_id"]) or {}
    code = parcel_code(book, order["_id"])
    book.put(ORDERS, {**(book.get(ORDERS, order["_id"]) or order), "parcel": code})
    book.put(
        PARCELS,
        {
            "_id": code,
            "order_id": order["_id"],
            "household_id": order["household_id"],
            "address": order["address"],
            "building": building_of(household),
            "phone_last4": (household.get("phone") or "")[-4:],
            "category": order["category"],
            "items": order["items"],
            "source": source,
            "state": "expected",
            "expected_at": now,
        },
    )
    return code


def building_of(household: dict[str, Any]) -> str:
    address = household.get("address") or {}
    return f"{address.get('compound', '')} {address.get('building', '')}".strip()


def scan_parcel(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, s.ScanParcel)
    code = parcel_code_of(cmd.code)
    if not parcel_code_fits(code):
        raise Rejection(422, f"{cmd.code!r} is not a parcel code: read it again", "Mistyped code")
    parcel = book.get(PARCELS, code)
    if parcel is None:
        raise Rejection(
            404,
            f"no parcel {code} is expected: register it by the address on it",
            "Not found",
        )
    if parcel["state"] != "expected":  # scanned twice: it is here already
        return Decision([], Outcome.ok(parcel_view(parcel)))
    return arrived(book, parcel, cmd.condition, cmd.note, cmd.actor, now)


def arrived(
    book: Orderbook,
    parcel: dict[str, Any],
    condition: s.ParcelCondition,
    note: str | None,
    by: str,
    now: datetime,
) -> Decision:
    order = book.get(ORDERS, parcel["order_id"])
    if order is not None and order.get("awaits_gate"):
        # Here now: a re-opened order is offered at once, not held for goods again.
        book.put(ORDERS, {**order, "awaits_gate": False})
    parcel = book.put(
        PARCELS,
        {
            **parcel,
            "state": "at_gate",
            "condition": condition.value,
            "note": note,
            "arrived_at": now,
            "received_by": by,
        },
    )
    here = s.ParcelArrived(
        code=parcel["_id"],
        order_id=parcel["order_id"],
        household_id=parcel["household_id"],
        address=parcel["address"],
        category=parcel["category"],
        condition=condition,
        note=note,
    )
    return Decision([here], Outcome.ok(parcel_view(parcel)))


def parcel_moved(book: Orderbook, order: dict[str, Any], to: Status, now: datetime) -> None:
    """The parcel follows its order: carried in, it has left the gate; not handed over, it
    is back at the gate with the reason, for staff to send again or call about."""
    parcel = book.get(PARCELS, order["parcel"]) if order.get("parcel") else None
    if parcel is None or parcel["state"] == "expected":
        return
    if to is Status.picked_up:
        carried = {"state": "carried", "carried_at": now, "carried_by": order.get("volunteer_id")}
        book.put(PARCELS, {**parcel, **carried})
    elif to is Status.delivered:
        book.put(PARCELS, {**parcel, "state": "delivered", "delivered_at": now})
    elif to is Status.failed:
        failure = order.get("failure") or {}
        back = {"reason": failure.get("reason"), "note": failure.get("note"), "at": now}
        book.put(PARCELS, {**parcel, "state": "at_gate", "returned": back})


def register_parcel(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, s.RegisterParcel)
    key_id = f"gate|{cmd.actor}|{cmd.idempotency_key}" if cmd.idempotency_key else None
    if (first := first_request(book, key_id, cmd.request_hash)) is not None:
        return again(book, first)
    household_id = book.addresses.get(domain.address_key(cmd.address))
    household = book.get(HOUSEHOLDS, household_id) if household_id else None
    if household is None:
        raise Rejection(
            404, f"no household at {cmd.address}: refuse the parcel, or ask the office", "Not found"
        )
    if (household.get("phone") or "")[-4:] != cmd.phone_last4:
        raise Rejection(
            409,
            f"the phone digits {cmd.phone_last4} are not those of {cmd.address}: check the label",
            "Does not match",
        )
    order, events = open_order(
        book,
        household,
        order_id=order_id_for(cmd.command_id),
        category=cmd.category,
        items=f"包裹 Parcel: {cmd.note}" if cmd.note else "包裹 Parcel",
        channel="gate",
        actor=cmd.actor,
        role="staff",
        priority=None,
        now=now,
        awaits_gate=False,  # it is here
    )
    code = expect_parcel(book, order, "gate", now)
    parcel = book.get(PARCELS, code)
    assert parcel is not None
    done = arrived(book, parcel, s.ParcelCondition.ok, cmd.note, cmd.actor, now)
    assert done.outcome is not None
    remember_request(book, key_id, cmd.request_hash, order["_id"])
    return Decision([*events, *done.events], Outcome.ok(done.outcome.body or {}, 201))


def again(book: Orderbook, order_id: str) -> Decision:
    """A retried request's answer: the parcel its first time made, as it is now."""
    order = book.get(ORDERS, order_id) or {}
    return Decision([], Outcome.ok(parcel_view(book.get(PARCELS, order["parcel"]) or {}), 201))


def announce_parcel(book: Orderbook, event: Event, now: datetime) -> Decision:
    cmd = event.data
    assert isinstance(cmd, s.AnnounceParcel)
    key_id = (
        domain.idempotency_id(cmd.household_id, "staff", cmd.actor, cmd.idempotency_key)
        if cmd.idempotency_key
        else None
    )
    if (first := first_request(book, key_id, cmd.request_hash)) is not None:
        return again(book, first)
    household = book.get(HOUSEHOLDS, cmd.household_id)
    if household is None:
        raise Rejection(404, "no such household in this community", "Not found")
    order, events = open_order(
        book,
        household,
        order_id=order_id_for(cmd.command_id),
        category=cmd.category,
        items=f"{cmd.items}（{cmd.from_name} 寄）",
        channel="relative",
        actor=cmd.actor,
        role="staff",
        priority=None,
        now=now,
        awaits_gate=True,  # it comes from outside, whatever the policy
    )
    code = expect_parcel(book, order, f"relative:{cmd.from_name}", now)
    remember_request(book, key_id, cmd.request_hash, order["_id"])
    return Decision(events, Outcome.ok(parcel_view(book.get(PARCELS, code) or {}), 201))


def gate_queue(
    parcels: Iterable[dict[str, Any]], orders: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """What waits at the gate, by building: in each, medicine first, then the oldest."""
    waiting = [
        p
        for p in parcels
        if p["state"] == "at_gate"
        and orders.get(p["order_id"], {}).get("status") not in (Status.delivered, Status.cancelled)
    ]
    buildings: dict[str, list[dict[str, Any]]] = {}
    for p in sorted(waiting, key=lambda p: (p["category"] != Category.medicine, p["arrived_at"])):
        buildings.setdefault(p["building"], []).append(parcel_view(p))
    return [
        {"building": b, "parcels": ps, "oldest": min(p["arrived_at"] for p in ps)}
        for b, ps in sorted(buildings.items(), key=lambda kv: min(p["arrived_at"] for p in kv[1]))
    ]


TRIP = timedelta(
    minutes=15
)  # parcels a cadre takes from the gate to a building this close: one trip


def gate_figures(
    parcels: Iterable[dict[str, Any]],
    day: date,
    clock: tzinfo,
    suppliers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The gate's day, for the daily report: parcels still expected, in and out of the gate
    that day, how long they waited there (p50/p95 minutes), trips made — a cadre's parcels
    to one building taken within 15 minutes — against one trip per order, and what came in
    not as ordered, per supplier by name (``suppliers``: id → name)."""
    on_day = [
        p
        for p in parcels
        if p.get("arrived_at") and p["arrived_at"].astimezone(clock).date() == day
    ]
    out = [
        p
        for p in parcels
        if p.get("carried_at") and p["carried_at"].astimezone(clock).date() == day
    ]
    waited = sorted(
        (p["carried_at"] - p["arrived_at"]).total_seconds() / 60 for p in out if p.get("arrived_at")
    )
    trips = 0
    last: dict[tuple[Any, str], datetime] = {}
    for p in sorted(out, key=lambda p: p["carried_at"]):
        key = (p.get("carried_by"), p.get("building", ""))
        if key not in last or p["carried_at"] - last[key] > TRIP:
            trips += 1
        last[key] = p["carried_at"]
    not_as_ordered: dict[str, Counter[str]] = {}
    for p in on_day:
        if p.get("condition", "ok") != "ok":
            by = source_name(p["source"], suppliers or {})
            not_as_ordered.setdefault(by, Counter())[p["condition"]] += 1
    return {
        "expected": sum(1 for p in parcels if p["state"] == "expected"),
        "in": len(on_day),
        "out": len(out),
        "minutes_at_gate_p50": percentile(waited, 0.5),
        "minutes_at_gate_p95": percentile(waited, 0.95),
        "trips": trips,
        "parcels_per_trip": round(len(out) / trips, 2) if trips else None,
        "trips_one_order_one_trip": len(out),
        "not_as_ordered": {s: dict(c) for s, c in sorted(not_as_ordered.items())},
    }


def source_name(source: str, suppliers: Mapping[str, str]) -> str:
    """Who a parcel came from, in words: the supplier's name, the relative as announced."""
    kind, _, who = source.partition(":")
    if kind == "supplier":
        return suppliers.get(who, who)
    return who or kind


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))], 1)


def parcel_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k not in ("_id", "_n")}
    return {"code": doc.get("_id"), **view}


def to_source(orders: Iterable[dict[str, Any]], serves: Iterable[str]) -> list[dict[str, Any]]:
    """The orders a cut-off takes: taken, not yet on the way, of what this supplier sells,
    not in a supplier order yet — oldest first."""
    served = set(serves) & {c.value for c in s.SOURCED}
    found = [
        o
        for o in orders
        if o["status"] in TO_SOURCE
        and o["category"] in served
        and not o.get("sourcing")
        and not o.get("parcel")  # sent by a relative, or already at the gate
    ]
    return sorted(found, key=lambda o: o["placed_at"])


def item_key(items: str) -> str:
    """Asked the same, packed the same: width, case and spacing do not make another line."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", items)).strip().casefold()


def consolidate(
    orders: list[dict[str, Any]], households: dict[str, dict[str, Any] | None]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Groceries summed by what was asked, most asked first; medicine per household."""
    summed: dict[str, dict[str, Any]] = {}
    medicine = []
    for order in orders:
        household = households.get(order["household_id"]) or {}
        if order["category"] == Category.medicine:
            medicine.append(
                {
                    "order_id": order["_id"],
                    "household_id": order["household_id"],
                    "address": household.get("address_text") or order.get("address"),
                    "items": order["items"],
                }
            )
            continue
        line = summed.setdefault(
            item_key(order["items"]),
            {"item": order["items"].strip(), "households": 0, "orders": []},
        )
        line["households"] += 1
        line["orders"].append(order["_id"])
    lines = sorted(summed.values(), key=lambda line: (-line["households"], line["item"]))
    return lines, medicine


# --- what staff and suppliers read -------------------------------------------------------------


def supplier_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k not in ("_id", "_n", "community_id")}
    return {"supplier_id": doc["_id"], "community_id": doc.get("community_id"), **view}


def supplier_order_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k not in ("_id", "_n")}
    return {"supplier_order_id": doc["_id"], **view}


FORMULA = re.compile(r"^[=+\-@\t\r]")  # a cell a spreadsheet would run, from residents' text


def supplier_order_csv(doc: dict[str, Any]) -> str:
    """What the supplier packs: one row per consolidated line, then medicine per household.
    With a byte-order mark, so a spreadsheet opens the Chinese as Chinese."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["kind", "item", "households", "address", "order_id"])
    rows = [["groceries", line["item"], line["households"], "", ""] for line in doc["lines"]]
    rows += [
        ["medicine", m["items"], 1, m["address"] or "", m["order_id"]] for m in doc["medicine"]
    ]
    for row in rows:
        writer.writerow([f"'{c}" if isinstance(c, str) and FORMULA.match(c) else c for c in row])
    return "\ufeff" + out.getvalue()
