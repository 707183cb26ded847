"""A stream of orders through the real services while something goes wrong, and the
checks that nothing was lost, doubled or stuck: shared by the failover and fault tests."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

import httpx

from shared.contracts.orders import CommunityPolicy
from shared.owner import partition_of
from tests.e2e.client import Community, auth, eventually
from tests.e2e.conftest import Running

PARTITIONS = 4  # as DOORSTEP_TOPIC_PARTITIONS in the e2e services
CLOCK = CommunityPolicy().clock()  # the communities' clock: Beijing time, as defined
CAPACITY = 2


def communities_on_every_partition() -> list[str]:
    found: dict[int, str] = {}
    while len(found) < PARTITIONS:
        candidate = f"f{uuid.uuid4().hex[:8]}"
        found.setdefault(partition_of(candidate, PARTITIONS), candidate)
    return [found[p] for p in sorted(found)]


def simulate(community: Community, vid: str, done: threading.Event, codes: dict[str, str]) -> None:
    """A volunteer's phone: accept every offer, pick up, deliver with the household's code."""
    with httpx.Client(timeout=30, headers=auth(community.volunteer_token(vid))) as http:
        base = community.url("dispatch", "/v1/tasks")
        while not done.is_set():
            try:
                for task in http.get(base).json()["tasks"]:
                    oid, state = task["order_id"], task["state"]
                    if state == "offered":
                        http.post(f"{base}/{oid}/accept")
                    elif state == "assigned":
                        http.post(f"{base}/{oid}/pick-up")
                    elif state == "picked_up" and oid in codes:
                        http.post(f"{base}/{oid}/deliver", json={"handoff_code": codes[oid]})
            except (httpx.HTTPError, KeyError, ValueError):
                pass  # a request during the fault: try again
            time.sleep(0.3)


class Stream:
    """Communities on every partition, each with households and volunteers who answer
    from the start; orders placed by staff, retried (same Idempotency-Key) through
    faults, as a real client would."""

    def __init__(
        self,
        running: Running,
        homes_each: int = 8,
        volunteers_each: int = 3,
        parcels_every: int = 0,
    ) -> None:
        """``parcels_every``: every so many orders is a relative's parcel instead, announced
        and scanned in at the gate (each retried through faults, as the phones would)."""
        self.http = httpx.Client(timeout=30)
        self.parcels_every = parcels_every
        self.parcels: dict[str, list[str]] = defaultdict(list)
        self.communities = [
            Community(running, self.http, c) for c in communities_on_every_partition()
        ]
        self.began = datetime.now(CLOCK).date()
        self.done = threading.Event()
        self.codes: dict[str, str] = {}
        self.orders: dict[str, list[str]] = defaultdict(list)
        self.household_of: dict[str, str] = {}
        self.homes: dict[str, list[str]] = {}
        self.workers: list[threading.Thread] = []
        for community in self.communities:
            community.define()
            imported = community.import_households(
                [f"F,1,{i},{i},g{i % 7 + 1},1390000{i:04d}," for i in range(homes_each)]
            )["imported"]
            self.homes[community.community_id] = [h["household_id"] for h in imported]
            for i in range(volunteers_each):
                vid = community.volunteer(f"g{i + 2}", capacity=CAPACITY)
                worker = threading.Thread(
                    target=simulate, args=(community, vid, self.done, self.codes), daemon=True
                )
                worker.start()
                self.workers.append(worker)

    def place(self, count_each: int, timeout: float = 180) -> None:
        """``count_each`` orders per community, one per household in turn."""
        for community in self.communities:
            homes = self.homes[community.community_id]
            for _ in range(count_each):
                placed = len(self.orders[community.community_id])
                home = homes[placed % len(homes)]
                key = f"k-{uuid.uuid4().hex}"
                if self.parcels_every and placed % self.parcels_every == self.parcels_every - 1:
                    order = self._through_the_gate(community, home, key, timeout)
                else:
                    order = self._place(community, home, key, timeout)
                self.codes[order["order_id"]] = order["handoff_code"]
                self.household_of[order["order_id"]] = home
                self.orders[community.community_id].append(order["order_id"])

    def _place(self, community: Community, home: str, key: str, timeout: float) -> Any:
        body = {"household_id": home, "category": "groceries", "items": f"rice {key}"}
        # One staff member retries as themselves: a key is theirs (another member's same
        # key is another order, held as a possible duplicate of the first).
        staff = community.staff
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = community.call(
                    "POST",
                    "orders",
                    "/v1/orders",
                    staff,
                    json=body,
                    headers={"Idempotency-Key": key},
                )
                if response.status_code == 201:
                    return response.json()
                assert response.status_code in (202, 503), (response.status_code, response.text)
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"order not taken within {timeout}s"
            time.sleep(0.5)

    def _through_the_gate(
        self, community: Community, home: str, key: str, timeout: float
    ) -> dict[str, Any]:
        """A relative's parcel: announced (same Idempotency-Key on every try), scanned in
        at the gate until the scan is answered; the order that carries it, with its code."""
        body = {"household_id": home, "from_name": "女儿", "items": f"水果 {key}"}
        deadline = time.monotonic() + timeout
        parcel = self._until_answered(
            community, "/v1/parcels", body, {"Idempotency-Key": key}, deadline
        )
        self._until_answered(community, "/v1/gate/scans", {"code": parcel["code"]}, {}, deadline)
        self.parcels[community.community_id].append(parcel["code"])
        while True:
            try:
                return community.order(community.staff, parcel["order_id"])
            except (httpx.HTTPError, AssertionError):
                assert time.monotonic() < deadline, "a parcel's order not readable"
                time.sleep(0.5)

    def _until_answered(
        self,
        community: Community,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str],
        deadline: float,
    ) -> dict[str, Any]:
        while True:
            try:
                response = community.call(
                    "POST", "orders", path, community.staff, json=body, headers=headers
                )
                if response.status_code in (200, 201):
                    return response.json()  # type: ignore[no-any-return]
                assert response.status_code in (202, 503), (response.status_code, response.text)
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{path} not answered in time"
            time.sleep(0.5)

    def assert_parcels_accounted_for(self) -> None:
        """Every parcel announced is delivered, once, and none is anywhere else."""
        for community in self.communities:
            found = community.ok("GET", "orders", "/v1/parcels", community.staff)
            codes = sorted(p["code"] for p in found["parcels"])
            assert codes == sorted(self.parcels[community.community_id]), "a parcel doubled"
            counts = found["counts"]
            assert counts["delivered"] == len(codes), counts

    def delivered(self) -> int:
        """Deliveries by the daily report, each day since the stream began — the
        community's days (Beijing time: after 16:00 UTC it is tomorrow there), as the
        report counts them. (A list answers 500 orders at most; a soak places thousands.)"""
        today = datetime.now(CLOCK).date()
        days = [self.began + timedelta(days=d) for d in range((today - self.began).days + 1)]
        return sum(
            c.ok(
                "GET",
                "orders",
                f"/v1/communities/{c.community_id}/report",
                c.staff,
                params={"day": day.isoformat()},
            )["delivered"]
            for c in self.communities
            for day in days
        )

    def wait_delivered(self, timeout: float = 300) -> None:
        total = sum(len(o) for o in self.orders.values())
        try:
            eventually(
                lambda: self.delivered() == total, timeout=timeout, what="every order delivered"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; not delivered: {self.stuck()}") from None

    def stuck(self) -> dict[str, Any]:
        """Where each undelivered order is, as orders and dispatch see it: what a failure
        must say, since the fault that caused it is gone by then."""
        found: dict[str, Any] = {}
        for c in self.communities:
            orders = c.ok("GET", "orders", "/v1/orders", c.staff, params={"limit": 500})["orders"]
            tasks = {
                t["order_id"]: t
                for t in c.ok("GET", "dispatch", "/v1/tasks", c.staff).get("tasks", [])
            }
            for order in orders:
                if order["status"] != "delivered":
                    task = tasks.get(order["order_id"], {})
                    found[order["order_id"]] = (
                        c.community_id,
                        order["status"],
                        task.get("state"),
                        task.get("volunteer_id"),
                    )
        return found

    def assert_households_told(self, timeout: float = 120) -> None:
        """Everyone is told: each order's household finds "delivered" in its inbox, once."""

        def untold() -> set[str]:
            told: Counter[str] = Counter()
            for c in self.communities:
                homes = {self.household_of[o] for o in self.orders[c.community_id]}
                for home in homes:
                    inbox = c.ok(
                        "GET", "notify", "/v1/inbox", c.resident(home), params={"limit": 200}
                    )
                    told.update(
                        i["order_id"] for i in inbox["items"] if i["kind"] == "task.delivered"
                    )
            doubled = {o: n for o, n in told.items() if n > 1}
            assert not doubled, f"told twice: {doubled}"
            return set(self.household_of) - set(told)

        try:
            eventually(lambda: not untold(), timeout=timeout, what="every household told")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; not told: {sorted(untold())[:20]}") from None

    def stop(self) -> None:
        self.done.set()
        for worker in self.workers:
            worker.join(timeout=10)
        self.http.close()

    def assert_exactly_once(self) -> None:
        """Every order assigned once and delivered once (by event id: a re-published copy
        carries the same id), and no volunteer ever above capacity."""
        for community in self.communities:
            unique = {p["event_id"]: (kind, p) for kind, p in community.dispatch_events()}
            events = [
                (kind, p.get("order", {}).get("order_id"), p.get("volunteer_id"))
                for kind, p in unique.values()
            ]
            placed = set(self.orders[community.community_id])
            for kind in ("task.assigned", "task.delivered"):
                counted = Counter(order_id for k, order_id, _ in events if k == kind)
                assert set(counted) == placed, kind
                assert max(counted.values()) == 1, kind
            live: dict[str, set[str]] = defaultdict(set)
            for kind, order_id, vid in events:
                if kind == "offer.made":
                    live[vid].add(order_id)
                    assert len(live[vid]) <= CAPACITY
                elif kind in (
                    "offer.declined",
                    "offer.expired",
                    "offer.withdrawn",
                    "task.delivered",
                ):
                    live[vid].discard(order_id)
