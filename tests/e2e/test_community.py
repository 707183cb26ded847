"""Setting a community up: 1,500 households in one CSV call, finding them again, and
volunteers' shifts that end by themselves."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from tests.e2e.client import Community, eventually


def test_fifteen_hundred_households_in_one_call_with_bad_rows_reported_by_line(
    community: Community,
) -> None:
    community.define()
    rng = random.Random(3)
    rows = [
        f"Datong Garden,{i // 60 + 1},{i // 20 % 3 + 1},{i},g{i % 7 + 1},"
        f"139{rng.randrange(10**8):08d},{'elderly_alone;no_smartphone' if i % 9 == 0 else ''}"
        for i in range(1500)
    ]
    bad = {
        101: "Datong Garden,1,1,x1,g8,13900000001,",  # unknown grid
        502: "Datong Garden,1,1,x2,g1,phone,",  # malformed phone
        903: "Datong Garden,1,1,x3,g1,13900000003,psychic",  # unknown flag
        1304: rows[0],  # the same address as line 2
    }
    for line, row in sorted(bad.items()):
        rows.insert(line - 2, row)
    started = time.monotonic()
    result = community.import_households(rows)
    took = time.monotonic() - started
    assert result["imported_count"] == 1500
    assert [r["line"] for r in result["rejected"]] == sorted(bad)
    assert "grid" in result["rejected"][0]["reason"] and "phone" in result["rejected"][1]["reason"]
    codes = [h["card_code"] for h in result["imported"]]
    assert len(set(codes)) == 1500
    print(f"\nimported 1,500 households in one call in {took:.1f}s")

    # Found again by card code or by phone.
    some = result["imported"][700]
    path = f"/v1/communities/{community.community_id}/households"
    by_code = community.ok(
        "GET", "orders", path, community.staff, params={"card_code": some["card_code"]}
    )
    household = by_code["households"][0]
    assert household["household_id"] == some["household_id"]
    by_phone = community.ok(
        "GET", "orders", path, community.staff, params={"phone": household["phone"]}
    )
    assert [h["household_id"] for h in by_phone["households"]] == [some["household_id"]]


def test_a_shift_past_its_end_checks_out_by_itself(community: Community) -> None:
    community.define()
    vid = community.volunteer("g1", check_in=False)
    tok = community.volunteer_token(vid)
    until = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    community.ok(
        "POST",
        "volunteers",
        f"/v1/volunteers/{vid}/check-in",
        tok,
        json={"grid_id": "g1", "until": until},
    )
    assert community.ok("GET", "volunteers", f"/v1/volunteers/{vid}", tok)["on_duty"] is True
    after = eventually(
        lambda: (
            (v := community.ok("GET", "volunteers", f"/v1/volunteers/{vid}", tok))["on_duty"]
            is False
            and v
        ),
        timeout=30,
        what="the shift to end by itself",
    )
    assert after["shifts"] == 1 and after["worked_seconds"] > 2
    board = eventually(
        lambda: (
            (b := community.ok("GET", "dispatch", "/v1/tasks", community.staff))["on_duty"] == []
            and b
        ),
        what="dispatch to see the volunteer off duty",
    )
    assert board["tasks"] == []


def test_the_demo_seed_builds_a_community_people_can_use(community: Community) -> None:
    from doorstep_cli.seed import seed
    from tests.e2e.conftest import SIGNING_KEY

    done = seed(
        community.url("orders", ""),
        community.url("volunteers", ""),
        SIGNING_KEY,
        community_id=community.community_id,
        households=70,
        cadres=6,
        on_duty=4,
    )
    assert (done.households, done.rejected, done.volunteers, done.on_duty) == (70, 0, 6, 4)
    # Seeded again (make run restarted on the same data): nothing added, nothing refused.
    again = seed(
        community.url("orders", ""),
        community.url("volunteers", ""),
        SIGNING_KEY,
        community_id=community.community_id,
        households=70,
        cadres=6,
        on_duty=4,
    )
    assert (again.households, again.already, again.rejected) == (0, 70, 0)
    info = community.ok(
        "GET", "orders", f"/v1/communities/{community.community_id}", community.staff
    )
    assert len(info["grids"]) == 7 and all(len(g["neighbours"]) == 2 for g in info["grids"])
    listed = community.ok("GET", "volunteers", "/v1/volunteers", community.staff)["volunteers"]
    assert len(listed) == 6 and all(v["status"] == "approved" for v in listed)
    assert sum(v["on_duty"] for v in listed) == 4
    eventually(
        lambda: len(community.ok("GET", "dispatch", "/v1/tasks", community.staff)["on_duty"]) == 4,
        what="dispatch to see the cadres on duty",
    )


def test_a_cadre_serves_two_communities_under_one_id_and_neither_loses_them(
    community: Community,
) -> None:
    community.define()
    other = Community(community.env, community.http, f"c{uuid.uuid4().hex[:8]}")
    other.define()
    vid = f"vol_{uuid.uuid4().hex[:10]}"
    community.volunteer("g1", vid=vid)  # on duty where they live
    other.volunteer("g2", vid=vid, check_in=False)  # and registered where they moved
    here = community.ok("GET", "volunteers", f"/v1/volunteers/{vid}", community.staff)
    there = other.ok("GET", "volunteers", f"/v1/volunteers/{vid}", other.staff)
    assert (here["community_id"], here["on_duty"]) == (community.community_id, True)
    assert (there["community_id"], there["on_duty"]) == (other.community_id, False)
    listed = community.ok("GET", "volunteers", "/v1/volunteers", community.staff)["volunteers"]
    assert [v["volunteer_id"] for v in listed].count(vid) == 1
    # Still on duty in the first community for dispatch too: offered its work.
    home = community.household("g1")["household_id"]
    order = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        community.staff,
        json={"household_id": home, "category": "groceries", "items": "米"},
    )["order_id"]
    community.offer_for(vid, order)
