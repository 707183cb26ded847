"""外围派单 as a morning at the gate, against the services as real processes: 300 orders in
a sealed compound, 200 of them bought from three suppliers at two cut-offs, 20 parcels sent
by relatives, the rest (garbage) dispatched as always; the parcels come in at the gate —
some short, one nobody announced — and cadres carry them in by building. At the end every
parcel is delivered and accounted for, and the cadres walked in far fewer times than one
trip per order."""

from __future__ import annotations

import random
import time

from tests.e2e.client import Community, eventually

BUILDINGS = 10
CAPACITY = 5


def suppliers(community: Community) -> dict[str, str]:
    return {
        "group_buy": community.supplier(
            "group_buy", "大同团购", ("groceries",), permit_number="DT-2026-017"
        ),
        "supermarket": community.supplier(),
        "pharmacy": community.supplier("pharmacy", "大同药房", ("medicine",)),
    }


def all_accepted(community: Community, count: int) -> None:
    def taken() -> bool:
        listed = community.ok(
            "GET", "orders", "/v1/orders", community.staff, params={"limit": 500}
        )["orders"]
        return sum(1 for o in listed if o["status"] != "placed") >= count

    eventually(taken, timeout=60, what=f"{count} orders taken")


def test_a_morning_at_the_gate_every_parcel_is_carried_in_by_building_and_accounted_for(
    community: Community,
) -> None:
    rng = random.Random(7)
    community.define(sourced_via_gate=True)
    staff = community.staff
    base = rng.randrange(10**7)
    rows = [
        f"Datong Garden,{1 + i % BUILDINGS},{1 + i // 100},{100 + i % 100},"
        f"g{1 + (i % BUILDINGS) % 3},139{base + i:08d},"
        for i in range(300)
    ]
    homes = [h["household_id"] for h in community.import_households(rows)["imported"]]
    assert len(homes) == 300
    cadres = [community.volunteer(f"g{1 + i % 3}", capacity=CAPACITY) for i in range(9)]
    shops = suppliers(community)

    def place(home: str, category: str, items: str) -> str:
        body = {"household_id": home, "category": category, "items": items}
        return community.ok("POST", "orders", "/v1/orders", staff, json=body)["order_id"]  # type: ignore[no-any-return]

    # The first groceries go to the group buy's cut-off, the later ones to the supermarket.
    first = [place(h, "groceries", rng.choice(["蔬菜包", "鸡蛋 一盒"])) for h in homes[:75]]
    medicine = [place(h, "medicine", "降压药 一盒") for h in homes[75:125]]
    garbage = [place(h, "garbage", "两袋") for h in homes[220:300]]
    all_accepted(community, 205)
    codes = []
    for shop in ("group_buy", "pharmacy"):
        sent = community.ok(
            "POST", "orders", "/v1/supplier-orders", staff, json={"supplier_id": shops[shop]}
        )
        codes += sent["parcels"]
    later = [place(h, "groceries", "大米 5kg") for h in homes[125:200]]
    relatives = [
        community.ok(
            "POST",
            "orders",
            "/v1/parcels",
            staff,
            json={"household_id": h, "from_name": "女儿", "items": "水果 一箱"},
        )
        for h in homes[200:220]
    ]
    all_accepted(community, 300)
    sent = community.ok(
        "POST", "orders", "/v1/supplier-orders", staff, json={"supplier_id": shops["supermarket"]}
    )
    codes += sent["parcels"]
    assert len(codes) == 200 and len(set(codes)) == 200
    codes += [r["code"] for r in relatives]
    assert community.ok("GET", "orders", "/v1/parcels", staff)["counts"]["expected"] == 220

    # In at the gate, in the order the vans unload: five came short; one nobody announced.
    rng.shuffle(codes)
    for i, code in enumerate(codes):
        scan = {"code": code}
        if i % 44 == 0:
            scan |= {"condition": "short", "note": "少了一袋"}
        assert (
            community.call("POST", "orders", "/v1/gate/scans", staff, json=scan).status_code == 200
        )
        assert (
            community.call("POST", "orders", "/v1/gate/scans", staff, json=scan).status_code == 200
        )
    stranger = community.ok("GET", "orders", f"/v1/households/{homes[3]}", staff)
    community.ok(
        "POST",
        "orders",
        "/v1/gate/parcels",
        staff,
        json={"address": stranger["address"], "phone_last4": stranger["phone"][-4:]},
    )

    # The cadres carry them in: each round, what each was offered is taken, carried, handed
    # over with the household's code. A round's parcels to one building are one trip.
    sourced = set(first + medicine + later) | {r["order_id"] for r in relatives}
    trips, delivered = 0, set()
    deadline = time.monotonic() + 90
    while len(delivered) < 301 and time.monotonic() < deadline:
        moved = False
        for vid in cadres:
            mine = [t for t in community.tasks(vid) if t["state"] in ("offered", "assigned")]
            if not mine:
                continue
            # At the gate: the batch taken as one (accepted and picked up in one answer).
            took = community.call(
                "POST",
                "dispatch",
                "/v1/tasks/take",
                community.volunteer_token(vid),
                json={"order_ids": [t["order_id"] for t in mine], "pick_up": True},
            )
            assert took.status_code in (200, 409), took.text  # 409: all lapsed meanwhile
            taken = set(took.json().get("taken", []))
            carried = [t for t in mine if t["order_id"] in taken]
            trips += len({t["building"] for t in carried if t["from_gate"]})
            for task in carried:
                code = community.order(staff, task["order_id"])["handoff_code"]
                done = community.act(vid, task["order_id"], "deliver", handoff_code=code)
                assert done.status_code == 200, done.text
                delivered.add(task["order_id"])
                moved = True
        if not moved:
            time.sleep(0.3)
    if len(delivered) < 301:
        listed = community.ok("GET", "orders", "/v1/orders", staff, params={"limit": 500})
        board = community.ok("GET", "dispatch", "/v1/tasks", staff)["tasks"]
        left = [o for o in listed["orders"] if o["order_id"] not in delivered]
        raise AssertionError(f"{len(delivered)} of 301 delivered; left: {left}; board: {board}")
    assert sourced <= delivered and set(garbage) <= delivered

    # Every parcel accounted for: delivered, none left anywhere else.
    accounted = eventually(
        lambda: (
            (c := community.ok("GET", "orders", "/v1/parcels", staff)["counts"])["delivered"] == 221
            and c
        ),
        what="every parcel delivered",
    )
    assert accounted == {"expected": 0, "at_gate": 0, "carried": 0, "delivered": 221, "returned": 0}
    # Far fewer walks than one per order, and the report says so too.
    assert trips <= len(sourced) // 3, f"{trips} trips for {len(sourced)} parcels"
    report = community.ok(
        "GET", "orders", f"/v1/communities/{community.community_id}/report", staff
    )["gate"]
    assert report["in"] == 221 and report["out"] == 221 and report["expected"] == 0
    assert report["trips"] <= trips and report["trips_one_order_one_trip"] == 221
    short = {who: counted.get("short", 0) for who, counted in report["not_as_ordered"].items()}
    assert set(short) <= {"大同团购", "大同生鲜超市", "大同药房", "女儿"}
    assert sum(short.values()) == 5
    print(f"\ngate morning: {trips} trips for {len(sourced) + 1} parcels; report {report}")
