"""外围派单, sourcing, against the services as real processes: staff keep the community's
suppliers, and at a cut-off one supplier order takes what the accepted orders need of it —
groceries summed across households, medicine per household — as JSON and CSV, and the
supplier is texted. Each order is ordered once, a stopped supplier orders nothing, and
bad input is refused with a clear 4xx."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

from tests.e2e.client import Community, eventually
from tests.gateway import GatewayServer


def test_a_cut_off_orders_what_the_community_needs_from_its_supplier_once(
    community: Community, gateway: GatewayServer
) -> None:
    community.define()
    staff = community.staff
    phone = f"139{uuid.uuid4().int % 10**8:08d}"
    shop = {
        "name": "大同生鲜超市",
        "kind": "supermarket",
        "contact_name": "王经理",
        "phone": phone,
        "serves": ["groceries", "medicine"],
    }
    supplier = community.ok("POST", "orders", "/v1/suppliers", staff, json=shop)
    sid = supplier["supplier_id"]
    assert supplier["open"] is True

    def place(category: str, items: str) -> str:
        home = community.household("g1")["household_id"]
        body = {"household_id": home, "category": category, "items": items}
        return community.ok("POST", "orders", "/v1/orders", staff, json=body)["order_id"]  # type: ignore[no-any-return]

    veg = [place("groceries", "蔬菜包") for _ in range(3)] + [place("groceries", "蔬菜包 ")]
    pills = place("medicine", "降压药 一盒")
    place("garbage", "两袋")  # nothing to buy outside: not in any supplier order

    def accepted(order_id: str) -> bool:
        return community.order(staff, order_id)["status"] == "accepted"

    for order_id in [*veg, pills]:
        eventually(lambda o=order_id: accepted(o), what="accepted")  # type: ignore[misc]
    sent = community.ok("POST", "orders", "/v1/supplier-orders", staff, json={"supplier_id": sid})
    assert [(line["item"], line["households"]) for line in sent["lines"]] == [("蔬菜包", 4)]
    assert [m["order_id"] for m in sent["medicine"]] == [pills]
    assert sorted(sent["order_ids"]) == sorted([*veg, pills])
    so = sent["supplier_order_id"]

    printed = community.call("GET", "orders", f"/v1/supplier-orders/{so}.csv", staff)
    assert printed.status_code == 200 and printed.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(printed.text.lstrip("\ufeff"))))
    assert rows[1][:3] == ["groceries", "蔬菜包", "4"] and rows[2][:2] == [
        "medicine",
        "降压药 一盒",
    ]
    listed = community.ok("GET", "orders", "/v1/supplier-orders", staff)["supplier_orders"]
    assert [s["supplier_order_id"] for s in listed] == [so]

    # The supplier is texted, in Chinese first.
    texted = eventually(
        lambda: [b for _, b in list(gateway.received) if b["recipient"] == f"phone:{phone}"],
        what="the supplier texted",
    )
    assert texted[0]["body"].startswith("大同生鲜超市：") and so in texted[0]["body"]

    # Each order once: nothing new, nothing to order; a stopped supplier orders nothing.
    again = community.call(
        "POST", "orders", "/v1/supplier-orders", staff, json={"supplier_id": sid}
    )
    assert again.status_code == 409, again.text
    stop = {"reason": "楼里新增病例"}
    assert (
        community.ok("POST", "orders", f"/v1/suppliers/{sid}/suspend", staff, json=stop)["open"]
        is False
    )
    later = place("groceries", "鸡蛋")
    eventually(lambda: accepted(later), what="accepted")
    stopped = community.call(
        "POST", "orders", "/v1/supplier-orders", staff, json={"supplier_id": sid}
    )
    assert stopped.status_code == 409 and "stopped" in stopped.json()["detail"]
    community.ok("POST", "orders", f"/v1/suppliers/{sid}/resume", staff, json={"reason": "解封"})
    resumed = community.ok(
        "POST", "orders", "/v1/supplier-orders", staff, json={"supplier_id": sid}
    )
    assert resumed["order_ids"] == [later]


def test_sourcing_refuses_bad_input_with_a_clear_4xx(community: Community) -> None:
    community.define()
    staff = community.staff
    shop: dict[str, Any] = {
        "name": "团购",
        "kind": "group_buy",
        "contact_name": "李",
        "phone": "13912345678",
        "serves": ["groceries"],
    }
    bad = [
        shop,  # a group buy without its permit
        {**shop, "kind": "supermarket", "serves": ["garbage"]},
        {**shop, "kind": "supermarket", "phone": "not a phone"},
        {**shop, "kind": "supermarket", "serves": []},
        {**shop, "kind": "market"},
    ]
    for body in bad:
        refused = community.call("POST", "orders", "/v1/suppliers", staff, json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    unknown = community.call(
        "POST", "orders", "/v1/supplier-orders", staff, json={"supplier_id": "sup_nobody"}
    )
    assert unknown.status_code == 404
    assert (
        community.call("GET", "orders", "/v1/supplier-orders/so_nope.csv", staff).status_code == 404
    )
    resident = community.resident(community.household("g1")["household_id"])
    assert community.call("GET", "orders", "/v1/suppliers", resident).status_code == 403
    assert community.call("GET", "orders", "/v1/parcels", resident).status_code == 403
    lost = community.call("GET", "orders", "/v1/parcels", staff, params={"state": "lost"})
    assert lost.status_code == 422 and lost.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert community.ok("GET", "orders", "/v1/suppliers", staff)["suppliers"] == []
    # A batch of parcels that are not the cadre's (another community's order, none at all,
    # too many): refused, and nothing taken.
    cadre = community.volunteer_token(community.volunteer("g1", check_in=False))
    for body, status in (
        ({"order_ids": ["ord_of_another_community"], "pick_up": True}, 409),
        ({"order_ids": []}, 422),
        ({"order_ids": [f"ord_{i}" for i in range(51)]}, 422),
        ({"order_ids": ["ord_1"], "pick_up": "yes please"}, 422),
    ):
        refused = community.call("POST", "dispatch", "/v1/tasks/take", cadre, json=body)
        assert refused.status_code == status, (body, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    not_a_cadre = community.call(
        "POST", "dispatch", "/v1/tasks/take", staff, json={"order_ids": ["ord_1"]}
    )
    assert not_a_cadre.status_code == 403


def test_parcels_come_in_at_the_gate_and_wait_there_by_building(
    community: Community, gateway: GatewayServer
) -> None:
    community.define()
    staff = community.staff
    cadre = community.volunteer("g1")
    sid = community.supplier("pharmacy", "大同药房", ("medicine",))
    home = community.household("g1")
    resident = community.resident(home["household_id"])
    pills = community.ok(
        "POST", "orders", "/v1/orders", resident, json={"category": "medicine", "items": "胰岛素"}
    )["order_id"]
    eventually(
        lambda: community.order(staff, pills)["status"] in ("accepted", "assigned"),
        what="accepted",
    )
    [code] = community.ok(
        "POST", "orders", "/v1/supplier-orders", staff, json={"supplier_id": sid}
    )["parcels"]
    so = community.ok("GET", "orders", "/v1/supplier-orders", staff)["supplier_orders"][0]
    printed = community.call(
        "GET", "orders", f"/v1/supplier-orders/{so['supplier_order_id']}/labels.pdf", staff
    )
    assert printed.status_code == 200 and printed.content.startswith(b"%PDF")
    mine = community.call("GET", "orders", f"/v1/parcels/{code}/label.pdf", resident)
    assert mine.status_code == 200 and mine.headers["content-type"] == "application/pdf"
    gate = community.volunteer_token(cadre)  # a cadre on gate duty
    first = community.call(
        "POST", "orders", "/v1/gate/scans", gate, json={"code": f" {code.lower()} "}
    )
    assert first.status_code == 200 and first.json()["state"] == "at_gate", first.text
    again = community.call("POST", "orders", "/v1/gate/scans", gate, json={"code": code})
    assert again.status_code == 200  # scanned twice: here already
    told = eventually(
        lambda: [n for n in community.inbox(resident)["items"] if n["kind"] == "parcel.arrived"],
        what="the resident told it is at the gate",
    )
    assert len(told) == 1 and "大门" in told[0]["body"]
    # Not as ordered: said why, or refused.
    not_said = community.call(
        "POST", "orders", "/v1/gate/scans", gate, json={"code": code, "condition": "damaged"}
    )
    assert not_said.status_code == 422
    # A parcel nobody announced, registered by its address; then what waits, by building.
    registered = community.ok(
        "GET", "orders", f"/v1/households/{home['household_id']}", community.staff
    )
    address, last4 = registered["address"], registered["phone"][-4:]
    taken = community.call(
        "POST",
        "orders",
        "/v1/gate/parcels",
        gate,
        json={"address": address, "phone_last4": last4, "note": "快递 一箱"},
    )
    assert taken.status_code == 201, taken.text
    wrong = community.call(
        "POST",
        "orders",
        "/v1/gate/parcels",
        gate,
        json={
            "address": address,
            "phone_last4": "0000" if last4 != "0000" else "1111",
        },
    )
    assert wrong.status_code == 409
    queue = community.ok("GET", "orders", "/v1/gate/queue", staff)["buildings"]
    waiting = [p for b in queue for p in b["parcels"]]
    assert [p["category"] for p in waiting] == ["medicine", "groceries"]  # medicine first
    bad = community.call("POST", "orders", "/v1/gate/scans", gate, json={"code": "PXXXXXXX"})
    assert bad.status_code == 422
    # Sent again after a timeout, with the same Idempotency-Key: the same parcel, once.
    sent_by = {"household_id": home["household_id"], "from_name": "女儿"}
    for path, body, other in (
        ("/v1/parcels", {**sent_by, "items": "水果"}, {**sent_by, "items": "牛奶"}),
        (
            "/v1/gate/parcels",
            {"address": address, "phone_last4": last4, "note": "又一箱"},
            {"address": address, "phone_last4": last4, "note": "另一件"},
        ),
    ):
        key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
        tries = [community.ok("POST", "orders", path, staff, json=body, headers=key) for _ in "12"]
        assert tries[0]["code"] == tries[1]["code"], path
        reused = community.call("POST", "orders", path, staff, json=other, headers=key)
        assert reused.status_code == 422 and "Idempotency" in reused.text, reused.text
    everything = community.ok("GET", "orders", "/v1/parcels", staff)["counts"]
    assert everything["expected"] + everything["at_gate"] == 4


def test_where_goods_come_in_through_the_gate_a_cadre_is_offered_them_only_once_there(
    community: Community,
) -> None:
    community.define(sourced_via_gate=True)
    staff = community.staff
    cadre = community.volunteer("g1")
    sid = community.supplier("pharmacy", "大同药房", ("medicine",))
    resident = community.resident(community.household("g1")["household_id"])
    pills = community.ok(
        "POST", "orders", "/v1/orders", resident, json={"category": "medicine", "items": "胰岛素"}
    )["order_id"]
    garbage = community.ok(
        "POST", "orders", "/v1/orders", resident, json={"category": "garbage", "items": "两袋"}
    )["order_id"]
    community.offer_for(cadre, garbage)  # nothing from outside: offered at once, as before
    board = community.ok("GET", "dispatch", "/v1/tasks", staff)["tasks"]
    assert {t["order_id"]: t["state"] for t in board}[pills] == "expected"
    assert all(t["order_id"] != pills for t in community.tasks(cadre))  # not offered yet
    [code] = community.ok(
        "POST", "orders", "/v1/supplier-orders", staff, json={"supplier_id": sid}
    )["parcels"]
    community.ok("POST", "orders", "/v1/gate/scans", staff, json={"code": code})
    community.offer_for(cadre, pills)  # at the gate: now a cadre carries it in
