"""A small client for the end-to-end tests: tokens, the HTTP calls people make, and
waiting for what happens asynchronously."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

from shared.auth import Role, mint
from shared.contracts.identity import phone_account
from shared.topics import DISPATCH_EVENTS
from tests.conftest import read_topic
from tests.e2e.conftest import SIGNING_KEY, Running
from tests.gateway import GatewayServer

T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float = 30, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


# Request bodies that pass validation, for tests that vary one field or check scope.
HOUSEHOLD_BODY: dict[str, Any] = {
    "address": {"compound": "A", "building": "1", "unit": "1", "room": "1"},
    "grid_id": "g1",
    "phone": "13900000000",
}
VOLUNTEER_BODY: dict[str, Any] = {
    "name": "X",
    "phone": "13700000000",
    "compound": "A",
    "home_grid_id": "g1",
    "work_unit": "bureau",
    "skills": ["delivery"],
    "capacity": 1,
}


def datong_rows() -> list[str]:
    """Datong's shape as CSV rows: 1,500 households in 30 buildings over 7 grids (5 units of
    10 rooms each); every 25th an elderly person living alone."""
    rows = [
        f"Datong Garden,{b},{u},{r}0{n},g{(b % 7) + 1},139{b:02d}{u}{r}{n:04d},"
        for b in range(1, 31)
        for u in range(1, 6)
        for r in range(1, 6)
        for n in range(1, 3)
    ]
    return [row + ("elderly_alone" if i % 25 == 0 else "") for i, row in enumerate(rows)]


def token(role: Role, community: str | None = None, **scope: str) -> str:
    return mint(
        SIGNING_KEY,
        role=role,
        subject=f"{role}-{uuid.uuid4().hex[:6]}",
        community_id=community,
        ttl_seconds=12 * 3600,  # a session's worth: some tests outlast 15 minutes
        **scope,
    )


def new_phone() -> str:
    return f"139{uuid.uuid4().int % 10**8:08d}"


def codes_for(gateway: GatewayServer, phone: str) -> list[str]:
    to = f"phone:+{phone_account(phone)}"
    with gateway.lock:
        texts = [b["body"] for _, b in gateway.received if b.get("recipient") == to]
    return [m.group(1) for t in texts if (m := re.search(r"(\d{6})", t))]


def known(community: Community, phone: str, role: str, timeout: float = 30) -> None:
    """Wait until identity learnt what this phone is (from the other services' events
    into its directory, a moment after they happened; staff as named): a sign-in before
    that is, rightly, nobody's."""
    from pymongo import MongoClient

    env = community.env
    account = phone_account(phone)
    with MongoClient(env.stack.mongo_url) as client:
        db = client[env.databases["identity"]]

        def learnt() -> bool:
            held = db["holders"].find({"account": account})
            named = (db["accounts"].find_one({"_id": account}) or {}).get("identities", [])
            return any(d["identity"]["role"] == role for d in held) or any(
                x["role"] == role and x["present"] for x in named
            )

        eventually(learnt, timeout, what=f"identity to know the {role}'s phone")


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def grids(n: int = 7) -> list[dict[str, Any]]:
    """g1..gN in a row; each neighbours the ones beside it."""
    return [
        {
            "grid_id": f"g{i}",
            "name": f"Grid {i}",
            "grid_worker": f"Grid worker {i}",
            "grid_worker_phone": f"1380000000{i % 10}",
            "neighbours": [f"g{j}" for j in (i - 1, i + 1) if 1 <= j <= n],
        }
        for i in range(1, n + 1)
    ]


@dataclass
class Community:
    """One test's own community, so tests share the services but not their data."""

    env: Running
    http: httpx.Client
    community_id: str

    @property
    def staff(self) -> str:
        return token(Role.staff, self.community_id)

    def url(self, service: str, path: str) -> str:
        return f"{self.env.urls[service]}{path}"

    def call(self, method: str, service: str, path: str, tok: str, **kw: Any) -> httpx.Response:
        headers = {**auth(tok), **kw.pop("headers", {})}
        return self.http.request(method, self.url(service, path), headers=headers, **kw)

    def ok(self, method: str, service: str, path: str, tok: str, **kw: Any) -> Any:
        response = self.call(method, service, path, tok, **kw)
        assert response.status_code in (200, 201), (response.status_code, response.text)
        return response.json()

    def define(self, sub_district: str | None = None, **policy: Any) -> None:
        body = {
            "community_id": self.community_id,
            "name": f"Community {self.community_id}",
            "grids": grids(),
            "policy": policy,
            "sub_district": sub_district,
        }
        self.ok("POST", "orders", "/v1/communities", token(Role.ops), json=body)

    def import_households(self, rows: list[str]) -> dict[str, Any]:
        text = "compound,building,unit,room,grid,phone,flags\n" + "\n".join(rows) + "\n"
        return self.ok(
            "POST",
            "orders",
            f"/v1/communities/{self.community_id}/households/import",  # type: ignore[no-any-return]
            self.staff,
            content=text,
            headers={"Content-Type": "text/csv"},
        )

    def household(self, grid: str, flags: str = "", room: str | None = None) -> dict[str, Any]:
        room = room or uuid.uuid4().hex[:6]
        result = self.import_households(
            [f"Datong Garden,1,1,{room},{grid},139{uuid.uuid4().int % 10**8:08d},{flags}"]
        )
        return result["imported"][0]  # type: ignore[no-any-return]

    def supplier(
        self,
        kind: str = "supermarket",
        name: str = "大同生鲜超市",
        serves: tuple[str, ...] = ("groceries",),
        **more: str,
    ) -> str:
        """A supplier the office keeps (a phone of its own): its id."""
        body = {
            "name": name,
            "kind": kind,
            "contact_name": "王经理",
            "phone": f"1391{uuid.uuid4().int % 10**7:07d}",
            "serves": list(serves),
            **more,
        }
        return self.ok("POST", "orders", "/v1/suppliers", self.staff, json=body)["supplier_id"]  # type: ignore[no-any-return]

    def bought_and_at_the_gate(self, supplier_id: str, order_ids: list[str]) -> list[str]:
        """Once the orders are taken: the supplier's cut-off, and every parcel it makes
        scanned in at the gate. The parcels' codes."""
        for order_id in order_ids:
            self.order_status(order_id, "accepted")
        sent = self.ok(
            "POST", "orders", "/v1/supplier-orders", self.staff, json={"supplier_id": supplier_id}
        )
        for code in sent["parcels"]:
            self.ok("POST", "orders", "/v1/gate/scans", self.staff, json={"code": code})
        return sent["parcels"]  # type: ignore[no-any-return]

    def resident(self, household_id: str) -> str:
        return token(Role.resident, self.community_id, household_id=household_id)

    def volunteer(
        self,
        grid: str,
        *,
        skills: tuple[str, ...] = ("delivery",),
        capacity: int = 2,
        check_in: bool = True,
        phone: str = "13700000001",
        vid: str | None = None,
        work_unit: str = "city ecology bureau",
    ) -> str:
        vid = vid or f"vol_{uuid.uuid4().hex[:10]}"
        tok = self.volunteer_token(vid)
        body = {
            "name": f"Cadre {vid[-4:]}",
            "phone": phone,
            "compound": "Datong Garden",
            "home_grid_id": grid,
            "work_unit": work_unit,
            "skills": list(skills),
            "capacity": capacity,
        }
        # The volunteers service learns of a new community from orders' events, a moment
        # after it was defined.
        eventually(
            lambda: (
                self.call("POST", "volunteers", "/v1/volunteers", tok, json=body).status_code
                in (201, 409)
            ),
            timeout=30,
            what="the volunteers service to know the community",
        )
        self.ok("POST", "volunteers", f"/v1/volunteers/{vid}/approve", self.staff)
        if check_in:
            self.check_in(vid, grid)
        return vid

    def volunteer_token(self, vid: str) -> str:
        return token(Role.volunteer, self.community_id, volunteer_id=vid)

    def check_in(self, vid: str, grid: str) -> None:
        until = (datetime.now(UTC) + timedelta(hours=4)).isoformat()
        self.ok(
            "POST",
            "volunteers",
            f"/v1/volunteers/{vid}/check-in",
            self.volunteer_token(vid),
            json={"grid_id": grid, "until": until},
        )

    def tasks(self, vid: str) -> list[dict[str, Any]]:
        return self.ok("GET", "dispatch", "/v1/tasks", self.volunteer_token(vid))["tasks"]  # type: ignore[no-any-return]

    def offer_for(self, vid: str, order_id: str, timeout: float = 30) -> dict[str, Any]:
        return eventually(
            lambda: next(
                (
                    t
                    for t in self.tasks(vid)
                    if t["order_id"] == order_id and t["state"] == "offered"
                ),
                None,
            ),
            timeout,
            f"an offer of {order_id} to {vid}",
        )

    def act(self, vid: str, order_id: str, action: str, **body: Any) -> httpx.Response:
        return self.call(
            "POST",
            "dispatch",
            f"/v1/tasks/{order_id}/{action}",
            self.volunteer_token(vid),
            json=body or None,
        )

    def put_photo(
        self,
        vid: str,
        order_id: str,
        photo_id: str,
        content: bytes = b"\xff\xd8\xff\xe0" + bytes(2000),
    ) -> httpx.Response:
        """A cadre's phone uploading a delivery photo (JPEG unless ``content`` says not)."""
        return self.call(
            "PUT",
            "dispatch",
            f"/v1/photos/{photo_id}",
            self.volunteer_token(vid),
            params={"order_id": order_id},
            content=content,
            headers={"Content-Type": "image/jpeg"},
        )

    def order(self, tok: str, order_id: str) -> dict[str, Any]:
        return self.ok("GET", "orders", f"/v1/orders/{order_id}", tok)  # type: ignore[no-any-return]

    def order_status(self, order_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
        return eventually(
            lambda: (o := self.order(self.staff, order_id))["status"] == status and o,
            timeout,
            f"order {order_id} to be {status}",
        )

    def dispatch_events(self, order_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(type, payload) of this community's dispatch events, read off the real topic."""
        records = asyncio.run(read_topic(self.env.stack.kafka_bootstrap, DISPATCH_EVENTS))
        events = []
        for record in records:
            if record.key != self.community_id.encode():
                continue
            headers = dict(record.headers)
            payload = {**json.loads(record.value), "event_id": headers["ce_id"].decode()}
            if order_id is None or payload.get("order", {}).get("order_id") == order_id:
                events.append(
                    (headers["ce_type"].decode().split(".", 1)[1].rsplit(".", 1)[0], payload)
                )
        return events

    def inbox(self, tok: str, **params: Any) -> dict[str, Any]:
        return self.ok("GET", "notify", "/v1/inbox", tok, params=params)  # type: ignore[no-any-return]
