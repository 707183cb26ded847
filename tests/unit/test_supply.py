"""外围派单, sourcing (services/orders/supply.py): suppliers, their intake, and the cut-off
that orders from one supplier what the community's accepted orders need of it."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest

from services.orders import supply
from services.orders.handlers import HOUSEHOLDS, ORDERS, Orderbook
from shared.contracts import orders as o
from shared.contracts import supply as s
from shared.decision import Rejection
from tests.unit.test_campaigns import T0, community, decide


def supplier(book: Orderbook, sid: str = "sup_1", **kw: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": "大同生鲜超市",
        "kind": s.SupplierKind.supermarket,
        "contact_name": "王经理",
        "phone": "13912340000",
        "serves": [o.Category.groceries],
        **kw,
    }
    return decide(
        book, s.DefineSupplier(command_id=f"def-{sid}", actor="staff", supplier_id=sid, **fields)
    ).outcome.body  # type: ignore[union-attr,return-value]


def order(book: Orderbook, n: int, category: str, items: str, minutes: int = 0) -> str:
    homes = sorted(h["_id"] for h in book.values(HOUSEHOLDS))
    placed = decide(
        book,
        o.PlaceOrder(
            command_id=f"place-{n}-{category}-{minutes}",
            actor="staff",
            household_id=homes[n % len(homes)],
            category=o.Category(category),
            items=items,
            channel="hotline",
            role="staff",
        ),
        T0 + timedelta(minutes=minutes),
    )
    return placed.outcome.body["order_id"]  # type: ignore[union-attr,index]


def from_relative(household_id: str, command_id: str = "from-daughter", **kw: Any) -> Any:
    """A relative's parcel announced for a household (a daughter's fruit unless said)."""
    fields: dict[str, Any] = {
        "from_name": "女儿",
        "items": "水果",
        "category": o.Category.groceries,
        **kw,
    }
    return s.AnnounceParcel(
        command_id=command_id, actor="staff", household_id=household_id, **fields
    )


def cut_off(book: Orderbook, sid: str = "sup_1", so: str = "so_1") -> dict[str, Any]:
    done = decide(
        book,
        s.SendSupplierOrder(command_id=so, actor="staff", supplier_order_id=so, supplier_id=sid),
    )
    return done.outcome.body  # type: ignore[union-attr,return-value]


def test_a_cut_off_sums_groceries_across_households_and_keeps_medicine_per_household() -> None:
    book = community()
    supplier(book, serves=[o.Category.groceries, o.Category.medicine])
    order(book, 0, "groceries", "蔬菜包", minutes=1)
    order(book, 1, "groceries", "蔬菜包 ", minutes=2)  # asked the same, spaced differently
    order(book, 2, "groceries", "ＲＩＣＥ 5kg", minutes=3)  # full width
    order(book, 3, "groceries", "rice 5KG", minutes=4)
    order(book, 4, "groceries", "蔬菜包", minutes=5)
    medicine = order(book, 0, "medicine", "降压药 一盒", minutes=6)
    order(book, 1, "garbage", "两袋", minutes=7)  # nothing from outside
    sent = cut_off(book)
    assert [(line["item"], line["households"]) for line in sent["lines"]] == [
        ("蔬菜包", 3),
        ("ＲＩＣＥ 5kg", 2),
    ]
    assert [m["order_id"] for m in sent["medicine"]] == [medicine]
    assert sent["medicine"][0]["address"].startswith("Datong Garden")
    assert len(sent["order_ids"]) == 6
    # Each order is ordered once: the next cut-off has only what came in since.
    with pytest.raises(Rejection) as nothing:
        cut_off(book, so="so_2")
    assert nothing.value.status == 409
    later = order(book, 2, "groceries", "鸡蛋", minutes=90)  # past the duplicate window
    assert cut_off(book, so="so_3")["order_ids"] == [later]
    assert book.get(ORDERS, later)["sourcing"]["supplier_order_id"] == "so_3"


def test_a_supplier_orders_only_what_it_sells_and_not_while_its_intake_is_stopped() -> None:
    book = community()
    supplier(book, "sup_pharmacy", kind=s.SupplierKind.pharmacy, serves=[o.Category.medicine])
    order(book, 0, "groceries", "蔬菜包")
    with pytest.raises(Rejection) as nothing:
        cut_off(book, "sup_pharmacy")
    assert nothing.value.status == 409  # groceries are not the pharmacy's
    pills = order(book, 1, "medicine", "胰岛素")
    stop = s.SetSupplierIntake(
        command_id="stop", actor="staff", supplier_id="sup_pharmacy", open=False, reason="new case"
    )
    assert decide(book, stop).events[0].open is False  # type: ignore[attr-defined]
    assert decide(book, stop).events == []  # said twice: as it is
    with pytest.raises(Rejection, match="stopped"):
        cut_off(book, "sup_pharmacy")
    go = s.SetSupplierIntake(
        command_id="go", actor="staff", supplier_id="sup_pharmacy", open=True, reason="cleared"
    )
    decide(book, go)
    assert cut_off(book, "sup_pharmacy")["order_ids"] == [pills]


def test_a_group_buy_needs_its_permit_and_an_unknown_supplier_is_not_found() -> None:
    book = community()
    with pytest.raises(Rejection, match="permit"):
        supplier(book, kind=s.SupplierKind.group_buy)
    assert supplier(book, kind=s.SupplierKind.group_buy, permit_number="TG-2022-031")["open"]
    with pytest.raises(Rejection) as unknown:
        cut_off(book, "sup_nobody")
    assert unknown.value.status == 404


def test_the_csv_is_what_the_supplier_packs_and_runs_no_formula() -> None:
    book = community()
    supplier(book, serves=[o.Category.groceries, o.Category.medicine])
    order(book, 0, "groceries", '=HYPERLINK("http://x")')
    order(book, 1, "medicine", "降压药")
    text = supply.supplier_order_csv(
        book.get(supply.SUPPLIER_ORDERS, cut_off(book)["supplier_order_id"])
    )  # type: ignore[arg-type]
    assert text.startswith("\ufeff")  # a spreadsheet opens the Chinese as Chinese
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0] == ["kind", "item", "households", "address", "order_id"]
    assert rows[1][:3] == ["groceries", '\'=HYPERLINK("http://x")', "1"]
    assert rows[2][0:2] == ["medicine", "降压药"] and rows[2][3].startswith("Datong Garden")


# --- the gate ---------------------------------------------------------------------------------


def scan(book: Orderbook, code: str, condition: str = "ok", note: str | None = None) -> Any:
    return decide(
        book,
        s.ScanParcel(
            command_id=f"scan-{code}-{condition}",
            actor="gate",
            code=code,
            condition=s.ParcelCondition(condition),
            note=note,
        ),
        T0 + timedelta(hours=2),
    )


def test_each_ordered_parcel_is_expected_with_a_code_and_scanned_in_once() -> None:
    book = community()
    supplier(book, serves=[o.Category.groceries, o.Category.medicine])
    veg = order(book, 0, "groceries", "蔬菜包")
    pills = order(book, 1, "medicine", "降压药")
    sent = cut_off(book)
    codes = sent["parcels"]
    assert len(set(codes)) == 2 and all(supply.parcel_code_fits(c) for c in codes)
    veg_code = book.get(ORDERS, veg)["sourcing"]["parcel"]
    here = scan(book, f"https://doorstep.example/p/{veg_code.lower()[:4]} {veg_code.lower()[4:]}")
    assert [e.condition for e in here.events] == [s.ParcelCondition.ok]  # type: ignore[attr-defined]
    assert book.get(supply.PARCELS, veg_code)["state"] == "at_gate"
    assert scan(book, veg_code).events == []  # scanned twice: here already, told once
    pills_code = book.get(ORDERS, pills)["sourcing"]["parcel"]
    short = scan(book, pills_code, "short", "一盒没到")
    assert short.events[0].note == "一盒没到"  # type: ignore[attr-defined]
    wrong = pills_code[:-2] + ("A" if pills_code[-2] != "A" else "C") + pills_code[-1]
    with pytest.raises(Rejection) as mistyped:
        scan(book, wrong)
    assert mistyped.value.status == 422  # the check character catches one wrong character
    with pytest.raises(Rejection) as unknown:
        scan(book, "P" + "ACDEFH" + supply.domain.check_character("ACDEFH"))
    assert unknown.value.status == 404


def unannounced(book: Orderbook, room: str, last4: str, building: str = "９") -> Any:
    address = o.Address(compound="Datong Garden", building=building, unit="1", room=room)
    return decide(
        book,
        s.RegisterParcel(
            command_id=f"gate-{room}-{last4}",
            actor="gate",
            address=address,
            phone_last4=last4,
            category=o.Category.groceries,
            note="快递 一箱",
        ),
    )


def test_a_parcel_nobody_announced_is_taken_in_by_its_address_or_refused_with_why() -> None:
    book = community()
    taken = unannounced(book, "102", "5678")  # full-width building number, as written
    kinds = [e.type.split(".")[1] + "." + e.type.split(".")[2] for e in taken.events]
    assert kinds == ["order.received", "order.accepted", "parcel.arrived"]
    assert taken.outcome.status == 201 and taken.outcome.body["state"] == "at_gate"  # type: ignore[union-attr]
    with pytest.raises(Rejection) as other_phone:
        unannounced(book, "101", "0000")
    assert other_phone.value.status == 409
    with pytest.raises(Rejection) as nowhere:
        unannounced(book, "909", "5678")
    assert nowhere.value.status == 404


def test_a_relatives_parcel_is_expected_then_arrives_and_the_gate_queue_puts_medicine_first() -> (
    None
):
    book = community()
    homes = sorted(h["_id"] for h in book.values(HOUSEHOLDS))
    announced = decide(
        book,
        from_relative(homes[0]),
    ).outcome.body
    assert announced["state"] == "expected"  # type: ignore[index]
    supplier(book, serves=[o.Category.medicine], kind=s.SupplierKind.pharmacy)
    pills = order(book, 1, "medicine", "胰岛素")
    cut_off(book)
    scan(book, announced["code"])  # type: ignore[index]
    scan(book, book.get(ORDERS, pills)["sourcing"]["parcel"])
    queue = supply.gate_queue(
        book.values(supply.PARCELS), {o["_id"]: o for o in book.values(ORDERS)}
    )
    parcels = [p for b in queue for p in b["parcels"]]
    assert len(parcels) == 2
    medicine_first = [b["parcels"][0]["category"] for b in queue if len(b["parcels"]) == 2]
    assert medicine_first in ([], ["medicine"])


def test_labels_print_the_code_the_address_the_phone_digits_and_mark_medicine() -> None:
    from pypdf import PdfReader

    from services.orders import labels

    printed = labels.render(
        [
            labels.Label(
                "PACDEFHJ", "Datong Garden 9-1-102", "5678", "medicine", "胰岛素", "ord_1"
            ),
            labels.Label(
                "PKMNPQRT", "Datong Garden 10-1-101", "4321", "groceries", "蔬菜包", "ord_2"
            ),
        ],
        "大同",
    )
    text = PdfReader(io.BytesIO(printed)).pages[0].extract_text()
    for said in ("PACDEFHJ", "9-1-102", "····5678", "药品", "PKMNPQRT", "蔬菜包", "大同 社区"):
        assert said in text, said


def test_an_order_whose_parcel_is_at_the_gate_is_offered_at_once_when_re_opened() -> None:
    book = community()
    homes = sorted(h["_id"] for h in book.values(HOUSEHOLDS))
    announced = decide(
        book,
        from_relative(homes[0], "from-son", from_name="儿子", items="米"),
    ).outcome.body
    order_id = announced["order_id"]  # type: ignore[index]
    assert book.get(ORDERS, order_id)["awaits_gate"] is True
    scan(book, announced["code"])  # type: ignore[index]
    from services.orders.book import facts

    assert facts(book.get(ORDERS, order_id)).awaits_gate is False  # type: ignore[arg-type]


def test_a_parcel_follows_its_order_and_one_not_handed_over_is_back_at_the_gate() -> None:
    from shared.contracts import dispatch as d

    book = community()
    supplier(book)
    veg = order(book, 0, "groceries", "蔬菜包")
    [code] = cut_off(book)["parcels"]
    scan(book, code)
    home = book.get(ORDERS, veg)
    ref = d.OrderRef(order_id=veg, household_id=home["household_id"], grid_id=home["grid_id"])
    decide(book, d.TaskAssigned(order=ref, volunteer_id="li", volunteer_name="Li"))
    decide(book, d.TaskPickedUp(order=ref, volunteer_id="li"))
    assert book.get(supply.PARCELS, code)["state"] == "carried"
    queue = supply.gate_queue(book.values(supply.PARCELS), {veg: book.get(ORDERS, veg)})
    assert queue == []  # on its way: no longer waiting at the gate
    decide(
        book,
        d.TaskFailed(
            order=ref, volunteer_id="li", reason=d.FailureReason.not_home, note="敲门无人"
        ),
    )
    back = book.get(supply.PARCELS, code)
    assert back["state"] == "at_gate" and back["returned"]["reason"] == "not_home"
    queue = supply.gate_queue(book.values(supply.PARCELS), {veg: book.get(ORDERS, veg)})
    assert [p["code"] for b in queue for p in b["parcels"]] == [code]  # for staff to act on


def test_a_parcel_code_another_order_has_is_never_given_again() -> None:
    book = community()
    first = supply.parcel_code(book, "ord_a")
    assert supply.parcel_code(book, "ord_a") == first  # the same order, the same code
    book.put(supply.PARCELS, {"_id": first, "order_id": "ord_other", "state": "expected"})
    second = supply.parcel_code(book, "ord_a")
    assert second != first and supply.parcel_code_fits(second)


def test_the_gates_day_counts_parcels_in_and_out_time_there_and_trips_against_one_per_order() -> (
    None
):
    from zoneinfo import ZoneInfo

    beijing = ZoneInfo("Asia/Shanghai")
    at = T0  # 16:00 in Beijing
    parcel = {"state": "carried", "building": "9", "carried_by": "li", "source": "supplier:s1"}
    parcels = [
        {**parcel, "arrived_at": at, "carried_at": at + timedelta(minutes=10)},
        {**parcel, "arrived_at": at, "carried_at": at + timedelta(minutes=12)},  # same trip
        {**parcel, "arrived_at": at, "carried_at": at + timedelta(minutes=40)},  # another
        {**parcel, "building": "10", "arrived_at": at, "carried_at": at + timedelta(minutes=41)},
        {
            "state": "at_gate",
            "building": "9",
            "source": "supplier:s1",
            "arrived_at": at,
            "condition": "short",
            "note": "少一盒",
        },  # short of what was ordered
        {"state": "expected", "building": "9", "source": "relative:女儿"},
    ]
    figures = supply.gate_figures(
        parcels, T0.astimezone(beijing).date(), beijing, {"s1": "大同药房"}
    )
    assert (figures["expected"], figures["in"], figures["out"]) == (1, 5, 4)
    assert (figures["trips"], figures["trips_one_order_one_trip"]) == (3, 4)
    assert figures["parcels_per_trip"] == 1.33
    assert figures["minutes_at_gate_p50"] == 40.0 and figures["minutes_at_gate_p95"] == 41.0
    assert figures["not_as_ordered"] == {"大同药房": {"short": 1}}  # in words, not ids
    next_day = supply.gate_figures(
        parcels, T0.astimezone(beijing).date() + timedelta(days=1), beijing
    )
    assert (next_day["in"], next_day["out"], next_day["trips"]) == (0, 0, 0)


def test_a_parcel_a_relative_sent_or_nobody_announced_is_never_bought_from_a_supplier() -> None:
    book = community()
    homes = sorted(h["_id"] for h in book.values(HOUSEHOLDS))
    from_daughter = from_relative(homes[0])
    decide(book, from_daughter)
    unannounced(book, "102", "5678")  # groceries, registered at the gate
    supplier(book)
    veg = order(book, 1, "groceries", "蔬菜包")
    sent = cut_off(book)
    assert sent["order_ids"] == [veg]
    assert len(sent["parcels"]) == 1


def test_a_parcel_for_a_household_that_just_ordered_is_not_held_as_a_duplicate_order() -> None:
    book = community()
    homes = sorted(h["_id"] for h in book.values(HOUSEHOLDS))
    order(book, 0, "groceries", "蔬菜包")  # the household's own order, minutes before
    from_daughter = from_relative(homes[0])
    kinds = [e.type.split(".")[2] for e in decide(book, from_daughter).events]
    assert kinds == ["received", "accepted"]
    ordered = book.get(HOUSEHOLDS, homes[0])
    address = ordered["address"]  # type: ignore[index]
    taken = unannounced(book, address["room"], ordered["phone"][-4:], address["building"])  # type: ignore[index]
    assert [e.type.split(".")[2] for e in taken.events] == ["received", "accepted", "arrived"]
    # Nor is a household's own order, after a parcel, held as a duplicate of the parcel.
    decide(book, from_daughter.model_copy(update={"command_id": "to-2", "household_id": homes[1]}))
    mine = order(book, 1, "groceries", "鸡蛋", minutes=5)
    assert book.get(ORDERS, mine)["status"] == "accepted"  # type: ignore[index]


def test_a_parcel_announced_or_registered_again_with_its_idempotency_key_is_one_parcel() -> None:
    """A relative's phone, or the gate's, retrying after a timeout: the same key, the same
    parcel; the key with another request is refused."""
    book = community()
    homes = sorted(h["_id"] for h in book.values(HOUSEHOLDS))
    first = from_relative(homes[0], "try-1", idempotency_key="k1", request_hash="h1")
    announced = decide(book, first).outcome.body  # type: ignore[union-attr]
    again = decide(book, first.model_copy(update={"command_id": "try-2"}))
    assert again.events == [] and again.outcome.body == announced  # type: ignore[union-attr]
    with pytest.raises(Rejection) as other:
        decide(book, first.model_copy(update={"command_id": "try-3", "request_hash": "h2"}))
    assert other.value.status == 422
    taken = unannounced(book, "102", "5678")
    register = s.RegisterParcel(
        command_id="gate-retry",
        actor="gate",
        address=o.Address(compound="Datong Garden", building="９", unit="1", room="102"),
        phone_last4="5678",
        category=o.Category.groceries,
        note="快递 一箱",
        idempotency_key="g1",
        request_hash="r1",
    )
    retried = decide(book, register)
    assert retried.outcome.body["code"] != taken.outcome.body["code"]  # type: ignore[index,union-attr]
    twice = decide(book, register.model_copy(update={"command_id": "gate-retry-2"}))
    assert twice.events == [] and twice.outcome.body == retried.outcome.body  # type: ignore[union-attr]
    assert len(list(book.values(supply.PARCELS))) == 3
