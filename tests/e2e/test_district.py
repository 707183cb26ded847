"""The sub-district's view against the services as real processes: built from the
communities' events by its own service; an officer sees their 街道's communities and
nobody else's; cadres mobilised by work unit."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from shared.auth import Role
from tests.e2e.client import Community, eventually, token
from tests.e2e.conftest import Running


def deliver_one(community: Community, vid: str) -> str:
    home = community.household("g1")
    resident = community.resident(home["household_id"])
    placed = community.ok(
        "POST", "orders", "/v1/orders", resident, json={"category": "medicine", "items": "药"}
    )
    order_id: str = placed["order_id"]
    community.offer_for(vid, order_id)
    community.act(vid, order_id, "accept")
    community.act(vid, order_id, "pick-up")
    code = community.order(resident, order_id)["handoff_code"]
    assert community.act(vid, order_id, "deliver", handoff_code=code).status_code == 200
    return order_id


def seen_by(community: Community, tok: str, path: str = "/v1/overview") -> Any:
    return community.ok("GET", "district", path, tok)


def test_an_officer_sees_their_sub_districts_communities_the_one_in_trouble_first(
    services: Running,
) -> None:
    district = f"城关街道-{uuid.uuid4().hex[:6]}"
    with httpx.Client(timeout=120) as http:
        calm, troubled, elsewhere = (
            Community(services, http, f"c{uuid.uuid4().hex[:8]}") for _ in range(3)
        )
        calm.define(sub_district=district)
        troubled.define(sub_district=district)
        elsewhere.define(sub_district="另一街道")
        cadre = calm.volunteer("g1", work_unit="市生态环境局")
        deliver_one(calm, cadre)
        # An urgent transfer in the other community, and nobody on duty there.
        home = troubled.household("g2")
        troubled.ok(
            "POST",
            "orders",
            "/v1/orders",
            troubled.staff,
            json={"category": "transfer", "items": "转运", "household_id": home["household_id"]},
        )

        officer = token(Role.sub_district, sub_district=district)

        def settled() -> Any:
            seen = seen_by(calm, officer)
            rows = {r["community_id"]: r for r in seen["communities"]}
            done = rows.get(calm.community_id, {}).get("delivered_today") == 1
            there = rows.get(troubled.community_id, {})
            # (dispatch escalates it at once too: no cadre on duty there to offer it to)
            urgent = there.get("urgent_waiting") == 1 and there.get("escalated_orders") == 1
            return seen if done and urgent else None

        seen = eventually(settled, timeout=60, what="the sub-district's view to catch up")
        assert seen["sub_district"] == district
        assert [r["community_id"] for r in seen["communities"]] == [
            troubled.community_id,  # in trouble: first
            calm.community_id,
        ]
        first, second = seen["communities"]
        assert set(first["trouble"]) == {"urgent_waiting", "nobody_on_duty", "escalated"}
        assert (second["trouble"], second["cadres_on_duty"], second["open_orders"]) == ([], 1, 0)
        assert second["households"] == 1
        assert seen["totals"]["in_trouble"] == 1

        units = seen_by(calm, officer, "/v1/mobilisation")["work_units"]
        assert [(u["work_unit"], u["cadres"], u["tasks_done"]) for u in units] == [
            ("市生态环境局", 1, 1)
        ]
        csv = calm.call("GET", "district", "/v1/mobilisation.csv", officer)
        assert csv.status_code == 200 and csv.text.startswith("\ufeff单位")
        assert "市生态环境局,1,1," in csv.text

        # Another sub-district's officer sees none of them; staff are not officers.
        other = seen_by(calm, token(Role.sub_district, sub_district="另一街道"))
        assert calm.community_id not in {r["community_id"] for r in other["communities"]}
        refused = calm.call("GET", "district", "/v1/overview", calm.staff)
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        bad_day = calm.call("GET", "district", "/v1/mobilisation?day=yesterday", officer)
        assert bad_day.status_code == 422
