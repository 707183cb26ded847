"""外围派单, sourcing — pure rules: the community's suppliers (a supermarket, a pharmacy, a
group buy with the office's permit), their intake opened and stopped, and the cut-off
that orders from one supplier everything the community's accepted orders need of it.

A supplier order consolidates: groceries are summed across households by what was asked
("蔬菜包 ×120"), so the supplier packs once; medicine stays per household (who, where,
what), as a pharmacy must dispense it. Each order is in at most one supplier order: the
next cut-off takes only what came in since."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from services.orders.book import COMMUNITIES, HOUSEHOLDS, ORDERS, Orderbook
from services.orders.domain import Status
from shared.contracts import supply as s
from shared.contracts.orders import Category
from shared.decision import Decision, Rejection
from shared.events import Event
from shared.outcome import Outcome

SUPPLIERS, SUPPLIER_ORDERS = "suppliers", "supplier_orders"
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
    order = book.put(
        SUPPLIER_ORDERS,
        {
            "_id": cmd.supplier_order_id,
            "supplier_id": supplier["_id"],
            "supplier_name": supplier["name"],
            "sent_at": now,
            "sent_by": cmd.actor,
            "order_ids": [o["_id"] for o in wanted],
            "lines": lines,
            "medicine": medicine,
        },
    )
    for wanted_order in wanted:
        source = {"supplier_order_id": cmd.supplier_order_id, "supplier_id": supplier["_id"]}
        book.put(ORDERS, {**wanted_order, "sourcing": source})
    sent = s.SupplierOrderSent(
        supplier_order_id=cmd.supplier_order_id,
        supplier_id=supplier["_id"],
        supplier_name=supplier["name"],
        phone=supplier["phone"],
        order_ids=order["order_ids"],
        lines=len(lines) + len(medicine),
    )
    return Decision([sent], Outcome.ok(supplier_order_view(order), 201))


def to_source(orders: Iterable[dict[str, Any]], serves: Iterable[str]) -> list[dict[str, Any]]:
    """The orders a cut-off takes: taken, not yet on the way, of what this supplier sells,
    not in a supplier order yet — oldest first."""
    served = set(serves) & {c.value for c in s.SOURCED}
    found = [
        o
        for o in orders
        if o["status"] in TO_SOURCE and o["category"] in served and not o.get("sourcing")
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
