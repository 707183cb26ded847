"""不漏一户 — a door-knock campaign over Datong's 1,500 households, against the real services:
cadres on duty take the walk lists of their grid and knock building by building; doors
that do not answer come back on the revisit list, and only the revisits bring coverage
to 100 %; a need found at a door becomes an order that is delivered; closing early is
refused; the grid worker's exception list is right at every stage."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.e2e.client import Community, datong_rows, eventually

GRIDS = [f"g{i}" for i in range(1, 8)]


def test_a_campaign_reaches_every_household_through_revisits_and_a_need_is_delivered(
    community: Community,
) -> None:
    community.define()
    imported = community.import_households(datong_rows())["imported"]
    assert len(imported) == 1500
    staff = community.staff
    cadres = {grid: community.volunteer(grid, capacity=10) for grid in GRIDS}
    elderly = {
        h["household_id"]
        for h in community.ok(
            "GET",
            "orders",
            f"/v1/communities/{community.community_id}/households",
            staff,
            params={"limit": 500, "grid_id": "g1"},
        )["households"]
        if "elderly_alone" in h["flags"]
    }

    campaign = community.ok(
        "POST",
        "orders",
        "/v1/campaigns",
        staff,
        json={"title": "Daily health check", "revisit_after_seconds": 2},
    )
    cid = campaign["campaign_id"]
    assert campaign["households"] == 1500 and campaign["status"] == "open"
    path = f"/v1/campaigns/{cid}"

    def exceptions() -> dict[str, set[str]]:
        found = community.ok("GET", "orders", f"{path}/exceptions", staff, params={"grid_id": "g1"})
        return {k: {e["household_id"] for e in v} for k, v in found.items()}

    at_start = exceptions()
    assert at_start["never_reached"] == set() and at_start["needs_not_served"] == set()
    assert at_start["elderly_alone_no_contact"] == elderly and elderly

    # Each cadre takes their grid's walk lists and knocks, door by door in walking order:
    # every tenth door does not answer; one household in grid 1 needs medicine.
    silent: set[str] = set()
    needy = None
    for grid, vid in cadres.items():
        tok = community.volunteer_token(vid)
        lists = community.ok("GET", "orders", f"{path}/walk-lists", tok, params={"grid_id": grid})
        for walk in lists["walk_lists"]:
            taken = community.ok("POST", "orders", f"{path}/walk-lists/{walk['list_id']}/take", tok)
            assert taken["volunteer_id"] == vid
        doors: list[dict[str, Any]] = []
        for walk in lists["walk_lists"]:
            for door in walk["doors"]:
                hid = door["household_id"]
                if len(doors) % 10 == 9:
                    silent.add(hid)
                    doors.append({"household_id": hid, "outcome": "no_answer"})
                elif grid == "g1" and needy is None and hid not in elderly:
                    needy = hid
                    doors.append(
                        {"household_id": hid, "outcome": "answered", "needs": ["medicine"]}
                    )
                else:
                    doors.append({"household_id": hid, "outcome": "answered"})
        for start in range(0, len(doors), 100):
            community.ok(
                "POST", "orders", f"{path}/visits", tok, json={"doors": doors[start : start + 100]}
            )
    assert needy is not None

    total = community.ok("GET", "orders", path, staff)["coverage"]["total"]
    assert total["no_answer"] == len(silent) and total["not_yet"] == 0
    assert total["reached"] == 1500 - len(silent) and total["percent"] < 100
    early = community.call("POST", "orders", f"{path}/close", staff)
    assert early.status_code == 409 and f"{len(silent)} households" in early.json()["detail"]

    stage = exceptions()
    g1_silent = {
        h for h in silent if h in {d["household_id"] for d in grid_doors(community, path, "g1")}
    }
    assert stage["never_reached"] == g1_silent
    assert stage["elderly_alone_no_contact"] == elderly & g1_silent  # the others answered
    (need,) = stage["needs_not_served"]
    assert need == needy

    # The need is an order like any other: offered to the cadre on duty in grid 1, delivered.
    order = next(
        o
        for o in community.ok("GET", "orders", "/v1/orders", staff, params={"limit": 10})["orders"]
        if o["household_id"] == needy
    )
    assert order["category"] == "medicine" and order["channel"] == "door_knock"
    deliver(community, cadres["g1"], order["order_id"])
    assert eventually(lambda: exceptions()["needs_not_served"] == set(), what="the need served")

    # After the revisit time, the silent doors come back; knocked again, they answer.
    time.sleep(2.5)
    due = community.ok("GET", "orders", f"{path}/revisits", staff)["revisits"]
    assert {d["household_id"] for d in due} == silent
    by_list: dict[str, list[str]] = {}
    for d in due:
        by_list.setdefault(d["grid_id"], []).append(d["household_id"])
    for grid, households in by_list.items():
        tok = community.volunteer_token(cadres[grid])
        community.ok(
            "POST",
            "orders",
            f"{path}/visits",
            tok,
            json={"doors": [{"household_id": h, "outcome": "answered"} for h in households]},
        )
    total = community.ok("GET", "orders", path, staff)["coverage"]["total"]
    assert total["percent"] == 100.0 and total["reached"] == 1500
    assert exceptions() == {
        "never_reached": set(),
        "needs_not_served": set(),
        "elderly_alone_no_contact": set(),
    }
    closed = community.ok("POST", "orders", f"{path}/close", staff)
    assert closed["status"] == "closed" and closed["not_reached_at_close"] == 0
    # The campaign's own trail: started, the early close refused, then closed; by whom.
    trail = community.ok(
        "GET", "orders", "/v1/audit", staff, params={"subject": f"campaign/{cid}"}
    )["steps"]
    commands = [(s["type"], s["status"]) for s in trail if s["kind"] == "command"]
    assert commands == [
        ("doorstep.campaign.start.v1", 201),
        ("doorstep.campaign.close.v1", 409),
        ("doorstep.campaign.close.v1", 200),
    ]


def grid_doors(community: Community, path: str, grid: str) -> list[dict[str, Any]]:
    lists = community.ok(
        "GET", "orders", f"{path}/walk-lists", community.staff, params={"grid_id": grid}
    )
    return [door for walk in lists["walk_lists"] for door in walk["doors"]]


def deliver(community: Community, cadre: str, order_id: str) -> None:
    """Whoever holds the offer now takes it (offers lapse in seconds here, and the cadres
    were busy knocking); if everyone let it pass, staff offer it to the grid's cadre."""
    staff = community.staff

    def on_offer() -> str | None:
        board = community.ok("GET", "dispatch", "/v1/tasks", staff)["tasks"]
        task = next((t for t in board if t["order_id"] == order_id), None)
        if task is None or (task["state"] == "waiting" and not task["escalated"]):
            return None  # between two offers
        if task["state"] == "waiting":
            path = f"/v1/tasks/{order_id}/offer-to"
            community.ok("POST", "dispatch", path, staff, json={"volunteer_id": cadre})
            return cadre
        # An offer that lapses between this read and the answer: try the next holder.
        vid: str = task["volunteer_id"]
        return vid if community.act(vid, order_id, "accept").status_code == 200 else None

    vid = eventually(on_offer, what="the need's order taken by a cadre")
    if community.order(staff, order_id)["status"] != "assigned":
        community.act(vid, order_id, "accept")
    community.order_status(order_id, "assigned")
    assert community.act(vid, order_id, "pick-up").status_code == 200
    code = community.order(staff, order_id)["handoff_code"]
    assert community.act(vid, order_id, "deliver", handoff_code=code).status_code == 200
    community.order_status(order_id, "delivered")


def test_a_phone_batch_is_taken_whole_or_not_at_all_and_a_resent_record_opens_one_order(
    community: Community,
) -> None:
    community.define()
    phones = [f"139{uuid.uuid4().int % 10**8:08d}" for _ in range(2)]
    rows = [f"Datong Garden,{b},1,101,g1,{p}," for b, p in zip(("1", "2"), phones, strict=True)]
    community.import_households(rows)
    staff = community.staff
    li, wang = (community.volunteer("g1", capacity=1) for _ in range(2))
    cid = community.ok(
        "POST", "orders", "/v1/campaigns", staff, json={"title": "Check", "grid_ids": ["g1"]}
    )["campaign_id"]
    path = f"/v1/campaigns/{cid}"
    lists = community.ok("GET", "orders", f"{path}/walk-lists", staff)["walk_lists"]
    for vid, walk in zip((li, wang), lists, strict=True):
        community.ok(
            "POST",
            "orders",
            f"{path}/walk-lists/{walk['list_id']}/take",
            community.volunteer_token(vid),
        )
    mine, theirs = (walk["doors"][0]["household_id"] for walk in lists)
    need = {
        "household_id": mine,
        "outcome": "answered",
        "needs": ["medicine"],
        "record_id": f"rec-{uuid.uuid4().hex}",
    }
    other = {"household_id": theirs, "outcome": "answered"}
    tok = community.volunteer_token(li)

    refused = community.call("POST", "orders", f"{path}/visits", tok, json={"doors": [need, other]})
    assert refused.status_code == 403, refused.text
    assert "nothing recorded" in refused.json()["detail"]
    assert "Datong Garden 2-1-101" in refused.json()["detail"]  # the door at fault, in words
    assert community.ok("GET", "orders", path, staff)["coverage"]["total"]["reached"] == 0
    assert community.ok("GET", "orders", "/v1/orders", staff)["orders"] == []

    # The phone sends its own door again, and once more after a timeout: one order.
    first = community.ok("POST", "orders", f"{path}/visits", tok, json={"doors": [need]})
    again = community.ok("POST", "orders", f"{path}/visits", tok, json={"doors": [need]})
    (order_id,) = first["recorded"][0]["order_ids"]
    assert again["recorded"][0]["order_ids"] == [order_id]
    orders = community.ok("GET", "orders", "/v1/orders", staff)["orders"]
    assert [o["order_id"] for o in orders] == [order_id]
    assert orders[0]["status"] == "accepted"  # not held as a duplicate of a lost one
    # Dispatch heard of it: the order is offered (Li and Wang walk lists; both are free).
    assert eventually(
        lambda: any(
            t["order_id"] == order_id
            for t in community.ok("GET", "dispatch", "/v1/tasks", staff)["tasks"]
        ),
        what="the need's order on the dispatch board",
    )
