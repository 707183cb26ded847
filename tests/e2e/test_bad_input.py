"""Scenario 7: bad input on every write endpoint gets a 4xx problem+json, and nothing is
written to any service's database but, for a request only the owner can judge (an
Idempotency-Key reused with another body), the refusal in its log and audit trail."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import MongoClient

from shared.auth import Role
from shared.owner import unpacked
from tests.e2e.client import HOUSEHOLD_BODY, VOLUNTEER_BODY, Community, grids, token

LONG = "x" * 5000


RECORDS = {"log", "heads", "audit"}  # what the owners record of every decision, refusals too


def ours(doc: dict[str, Any], community_id: str) -> bool:
    """A document of this community: the services are shared with other tests, whose
    communities go on living meanwhile (an offer lapses, a timer fires)."""
    return doc.get("community_id") == community_id or community_id in str(doc["_id"])


def snapshot(community: Community) -> dict[str, str]:
    """A digest of this community's documents in every collection of every service's
    database but the owners' records."""
    client: MongoClient[dict[str, Any]] = MongoClient(community.env.stack.mongo_url)
    try:
        digests = {}
        for service, name in community.env.databases.items():
            db = client[name]
            for collection in sorted(set(db.list_collection_names()) - RECORDS):
                docs = sorted(
                    repr(sorted(d.items()))
                    for d in db[collection].find()
                    if ours(d, community.community_id)
                )
                digests[f"{service}.{collection}"] = hashlib.sha256(
                    "".join(docs).encode()
                ).hexdigest()
        return digests
    finally:
        client.close()


def decisions(community: Community) -> dict[str, dict[str, Any]]:
    """This community's log entries of every owner, by service and id, as decided."""
    client: MongoClient[dict[str, Any]] = MongoClient(community.env.stack.mongo_url, tz_aware=True)
    try:
        found = {}
        for service, name in community.env.databases.items():
            db = client[name]
            for stored in db["log"].find({"community_id": community.community_id}):
                found[f"{service}:{stored['_id']}"] = unpacked(stored, db.codec_options)
        return found
    finally:
        client.close()


def settled(community: Community) -> dict[str, str]:
    """Wait until earlier work has finished flowing through the services."""
    before = snapshot(community)
    while True:
        time.sleep(1.0)
        after = snapshot(community)
        if after == before:
            return after
        before = after


def test_bad_input_on_every_write_endpoint_is_refused_and_changes_nothing(
    community: Community,
) -> None:
    c = community.community_id
    community.define()
    home = community.household("g3")
    resident = community.resident(home["household_id"])
    volunteer = community.volunteer("g3")
    vtoken = community.volunteer_token(volunteer)
    order = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        resident,
        json={"category": "groceries", "items": "rice"},
        headers={"Idempotency-Key": f"k-{c}"},
    )
    o = order["order_id"]
    community.offer_for(volunteer, o)
    # Accepted: a live offer would lapse while the cases run and change the board.
    assert community.act(volunteer, o, "accept").status_code == 200
    community.order_status(o, "assigned")
    staff = community.staff
    ops_token = token(Role.ops)
    household_ok = HOUSEHOLD_BODY
    volunteer_ok = VOLUNTEER_BODY
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    csv = "compound,building,unit,room,grid,phone,flags\n"
    cases: list[tuple[str, str, str, str, dict[str, Any]]] = [
        # (what, service, method path, token, request kwargs)
        (
            "community without grids",
            "orders",
            "POST /v1/communities",
            ops_token,
            {"json": {"community_id": f"{c}-new", "name": "N", "grids": []}},
        ),
        (
            "community with an unknown neighbour",
            "orders",
            "POST /v1/communities",
            ops_token,
            {
                "json": {
                    "community_id": f"{c}-new",
                    "name": "N",
                    "grids": [{**grids(1)[0], "neighbours": ["g9"]}],
                }
            },
        ),
        (
            "community id with spaces",
            "orders",
            "POST /v1/communities",
            ops_token,
            {"json": {"community_id": "Da Tong", "name": "N", "grids": grids(2)}},
        ),
        (
            "oversized community name",
            "orders",
            "POST /v1/communities",
            ops_token,
            {"json": {"community_id": f"{c}-new", "name": LONG, "grids": grids(2)}},
        ),
        (
            "household: malformed phone",
            "orders",
            f"POST /v1/communities/{c}/households",
            staff,
            {"json": {**household_ok, "phone": "call me"}},
        ),
        (
            "household: unknown grid",
            "orders",
            f"POST /v1/communities/{c}/households",
            staff,
            {"json": {**household_ok, "grid_id": "g99"}},
        ),
        (
            "household: missing address",
            "orders",
            f"POST /v1/communities/{c}/households",
            staff,
            {"json": {"grid_id": "g1", "phone": "13900000000"}},
        ),
        (
            "household: flags of the wrong type",
            "orders",
            f"POST /v1/communities/{c}/households",
            staff,
            {"json": {**household_ok, "flags": "elderly_alone"}},
        ),
        (
            "household: unknown flag",
            "orders",
            f"POST /v1/communities/{c}/households",
            staff,
            {"json": {**household_ok, "flags": ["vip"]}},
        ),
        (
            "csv: wrong header",
            "orders",
            f"POST /v1/communities/{c}/households/import",
            staff,
            {"content": "name,phone\nx,1\n"},
        ),
        (
            "csv: every row bad",
            "orders",
            f"POST /v1/communities/{c}/households/import",
            staff,
            {
                "content": csv
                + "A,1,1,1,g99,13900000000,\nA,1,1,2,g1,12ab,\n,1,1,3,g1,13900000001,\n"
            },
        ),
        (
            "csv: not UTF-8",
            "orders",
            f"POST /v1/communities/{c}/households/import",
            staff,
            {"content": b"\xff\xfe\x00bad"},
        ),
        (
            "order: missing items",
            "orders",
            "POST /v1/orders",
            resident,
            {"json": {"category": "groceries"}},
        ),
        (
            "order: unknown category",
            "orders",
            "POST /v1/orders",
            resident,
            {"json": {"category": "fireworks", "items": "x"}},
        ),
        (
            "order: oversized items",
            "orders",
            "POST /v1/orders",
            resident,
            {"json": {"category": "groceries", "items": LONG}},
        ),
        (
            "order: priority of the wrong type",
            "orders",
            "POST /v1/orders",
            staff,
            {
                "json": {
                    "household_id": home["household_id"],
                    "category": "groceries",
                    "items": "x",
                    "priority": "high",
                }
            },
        ),
        (
            "order: unknown field",
            "orders",
            "POST /v1/orders",
            resident,
            {"json": {"category": "groceries", "items": "x", "deliver_to": "elsewhere"}},
        ),
        (
            "order: staff without household",
            "orders",
            "POST /v1/orders",
            staff,
            {"json": {"category": "groceries", "items": "x"}},
        ),
        (
            "order: not JSON",
            "orders",
            "POST /v1/orders",
            resident,
            {"content": "category=groceries", "headers": {"Content-Type": "application/json"}},
        ),
        (
            "order: Idempotency-Key reused with another body",
            "orders",
            "POST /v1/orders",
            resident,
            {
                "json": {"category": "medicine", "items": "other"},
                "headers": {"Idempotency-Key": f"k-{c}"},
            },
        ),
        (
            "cancel: oversized reason",
            "orders",
            f"POST /v1/orders/{o}/cancel",
            resident,
            {"json": {"reason": LONG}},
        ),
        (
            "priority out of range",
            "orders",
            f"PUT /v1/orders/{o}/priority",
            staff,
            {"json": {"priority": 101}},
        ),
        (
            "priority as a string",
            "orders",
            f"PUT /v1/orders/{o}/priority",
            staff,
            {"json": {"priority": "50"}},
        ),
        (
            "priority as a boolean",
            "orders",
            f"PUT /v1/orders/{o}/priority",
            staff,
            {"json": {"priority": True}},
        ),
        (
            "volunteer: capacity as a string",
            "volunteers",
            "POST /v1/volunteers",
            vtoken,
            {"json": {**volunteer_ok, "capacity": "2"}},
        ),
        (
            "volunteer: malformed phone",
            "volunteers",
            "POST /v1/volunteers",
            vtoken,
            {"json": {**volunteer_ok, "phone": "12"}},
        ),
        (
            "volunteer: unknown skill",
            "volunteers",
            "POST /v1/volunteers",
            vtoken,
            {"json": {**volunteer_ok, "skills": ["juggling"]}},
        ),
        (
            "volunteer: capacity zero",
            "volunteers",
            "POST /v1/volunteers",
            vtoken,
            {"json": {**volunteer_ok, "capacity": 0}},
        ),
        (
            "volunteer: missing name",
            "volunteers",
            "POST /v1/volunteers",
            vtoken,
            {"json": {k: v for k, v in volunteer_ok.items() if k != "name"}},
        ),
        (
            "check-in: in the past",
            "volunteers",
            f"POST /v1/volunteers/{volunteer}/check-in",
            vtoken,
            {"json": {"grid_id": "g3", "until": past}},
        ),
        (
            "check-in: no time zone",
            "volunteers",
            f"POST /v1/volunteers/{volunteer}/check-in",
            vtoken,
            {"json": {"grid_id": "g3", "until": "2030-01-01T10:00:00"}},
        ),
        (
            "deliver: both proofs",
            "dispatch",
            f"POST /v1/tasks/{o}/deliver",
            vtoken,
            {"json": {"handoff_code": "1234", "photo_url": "https://p/x.jpg"}},
        ),
        ("deliver: no proof", "dispatch", f"POST /v1/tasks/{o}/deliver", vtoken, {"json": {}}),
        (
            "deliver: code of the wrong shape",
            "dispatch",
            f"POST /v1/tasks/{o}/deliver",
            vtoken,
            {"json": {"handoff_code": "12a4"}},
        ),
        (
            "fail: unknown reason",
            "dispatch",
            f"POST /v1/tasks/{o}/fail",
            vtoken,
            {"json": {"reason": "tired"}},
        ),
        ("read: unknown notification", "notify", "POST /v1/inbox/nope/read", resident, {}),
        ("call done: unknown entry", "notify", "POST /v1/call-list/nope/done", staff, {}),
    ]
    before = settled(community)
    logged = decisions(community)
    wrong = []
    for what, service, route, tok, kwargs in cases:
        method, path = route.split(" ", 1)
        response = community.call(method, service, path, tok, **kwargs)
        problem = response.headers.get("content-type") == "application/problem+json"
        if not (400 <= response.status_code < 500 and problem):
            wrong.append((what, response.status_code, response.text[:200]))
        elif response.status_code == 422 and "errors" in response.json():
            assert all({"field", "message"} <= set(e) for e in response.json()["errors"]), what
    assert wrong == []
    assert settled(community) == before
    # What the owners recorded meanwhile: refusals only (no change, no event).
    new = [e for k, e in decisions(community).items() if k not in logged]
    assert new  # the reused Idempotency-Key, judged by the owner
    assert all(not e["changes"] and not e["events"] for e in new), new
    assert all(o["status"] >= 400 for e in new for o in e["outcomes"].values()), new
