"""Scenario 5: 200 orders over 7 grids, 20 volunteers of capacity 2 simulated by the test.
Every order is delivered, no volunteer is ever above capacity, no order is assigned twice;
the spread of deliveries per volunteer is printed."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.client import Community, auth, eventually

ORDERS, VOLUNTEERS, CAPACITY = 200, 20, 2
CATEGORIES = ["groceries", "medicine", "garbage", "groceries", "other"]


@pytest.mark.timeout(900)
def test_two_hundred_orders_twenty_volunteers(
    community: Community, capsys: pytest.CaptureFixture[str]
) -> None:
    community.define()
    rows = [
        f"Block {i // 50},{i // 10 % 5},{i % 10},{i},g{i % 7 + 1},139{i:08d},"
        for i in range(ORDERS)
    ]
    homes = community.import_households(rows)["imported"]
    assert len(homes) == ORDERS
    volunteers = [
        community.volunteer(f"g{i % 7 + 1}", capacity=CAPACITY) for i in range(VOLUNTEERS)
    ]
    staff = community.staff

    started = time.monotonic()

    def place(i: int) -> str:
        body = {
            "household_id": homes[i]["household_id"],
            "category": CATEGORIES[i % len(CATEGORIES)],
            "items": f"parcel {i}",
        }
        with httpx.Client(timeout=30) as http:
            response = http.post(
                community.url("orders", "/v1/orders"), json=body, headers=auth(staff)
            )
        assert response.status_code == 201, response.text
        return response.json()["order_id"]  # type: ignore[no-any-return]

    with ThreadPoolExecutor(4) as pool:
        order_ids = list(pool.map(place, range(ORDERS)))
    placed_in = time.monotonic() - started
    print(f"\nplaced {ORDERS} orders in {placed_in:.1f}s", flush=True)

    codes: dict[str, str] = {}
    codes_lock = threading.Lock()
    seen_load: dict[str, int] = defaultdict(int)
    done = threading.Event()

    def handoff_code(http: httpx.Client, order_id: str) -> str:
        with codes_lock:
            if order_id in codes:
                return codes[order_id]
        code = http.get(
            community.url("orders", f"/v1/orders/{order_id}"), headers=auth(staff)
        ).json()["handoff_code"]
        with codes_lock:
            codes[order_id] = code
        return code

    def simulate(vid: str) -> None:
        tok = community.volunteer_token(vid)
        with httpx.Client(timeout=30, headers=auth(tok)) as http:
            base = community.url("dispatch", "/v1/tasks")
            while not done.is_set():
                tasks = http.get(base).json()["tasks"]
                seen_load[vid] = max(seen_load[vid], len(tasks))
                for task in tasks:
                    oid, state = task["order_id"], task["state"]
                    if state == "offered":
                        http.post(f"{base}/{oid}/accept")
                    elif state == "assigned":
                        http.post(f"{base}/{oid}/pick-up")
                    elif state == "picked_up":
                        http.post(
                            f"{base}/{oid}/deliver", json={"handoff_code": handoff_code(http, oid)}
                        )
                time.sleep(0.2)

    workers = [threading.Thread(target=simulate, args=(vid,), daemon=True) for vid in volunteers]
    for worker in workers:
        worker.start()
    try:

        def all_delivered() -> bool:
            orders = community.ok(
                "GET", "orders", "/v1/orders", staff, params={"status": "delivered", "limit": 500}
            )["orders"]
            print(f"{time.monotonic() - started:6.1f}s: {len(orders)} delivered", flush=True)
            time.sleep(2)
            return len(orders) == ORDERS

        eventually(all_delivered, timeout=600, what=f"all {ORDERS} orders delivered")
    finally:
        done.set()
        for worker in workers:
            worker.join(timeout=30)
    elapsed = time.monotonic() - started

    events = community.dispatch_events()
    assigned = Counter(p["order"]["order_id"] for kind, p in events if kind == "task.assigned")
    assert set(assigned) == set(order_ids)
    assert max(assigned.values()) == 1, "an order was assigned twice"

    # Replay the volunteers' load from the events: never above capacity, at any moment.
    live: dict[str, set[str]] = defaultdict(set)
    peak: dict[str, int] = defaultdict(int)
    for kind, p in events:
        vid, oid = p.get("volunteer_id"), p.get("order", {}).get("order_id")
        if kind == "offer.made":
            live[vid].add(oid)
            peak[vid] = max(peak[vid], len(live[vid]))
        elif kind in (
            "offer.declined",
            "offer.expired",
            "offer.withdrawn",
            "task.delivered",
            "task.failed",
        ):
            live[vid].discard(oid)
    assert max(peak.values()) <= CAPACITY
    assert max(seen_load.values()) <= CAPACITY

    delivered = Counter(p["volunteer_id"] for kind, p in events if kind == "task.delivered")
    per_volunteer = sorted(delivered.get(v, 0) for v in volunteers)
    assert sum(per_volunteer) == ORDERS
    with capsys.disabled():
        print(
            f"\n{ORDERS} orders, {VOLUNTEERS} volunteers x capacity {CAPACITY}: "
            f"placed in {placed_in:.1f}s, all delivered in {elapsed:.1f}s; "
            "deliveries per volunteer "
            f"min {per_volunteer[0]} / median {statistics.median(per_volunteer):g} "
            f"/ max {per_volunteer[-1]}; "
            f"offers lapsed: {sum(1 for k, _ in events if k == 'offer.expired')}"
        )
