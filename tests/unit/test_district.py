"""The sub-district's view: what its rules keep from the communities' events, and how a
community in trouble stands out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.district import views
from services.district.handlers import CADRES, COMMUNITIES, DistrictRules
from shared.contracts import campaigns as c
from shared.contracts import dispatch as d
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.decision import Documents
from shared.events import Event

T0 = datetime(2022, 4, 10, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
RULES = DistrictRules().table()


def hear(state: Documents, payload: Any, at: datetime = T0) -> None:
    event = Event(source="/tests", community_id=state.community_id, time=at, data=payload)
    RULES[type(payload)](state, event, at)


def community(community_id: str = "datong", sub_district: str | None = "城关街道") -> Documents:
    state = Documents(community_id, {})
    grid = o.Grid(grid_id="g1", name="一网格", grid_worker="王芳", grid_worker_phone="13800000001")
    policy = o.CommunityPolicy(time_zone="Asia/Shanghai")
    defined = o.CommunityDefined(
        community_id=community_id,
        name=f"{community_id}社区",
        grids=[grid],
        policy=policy,
        sub_district=sub_district,
    )
    hear(state, defined)
    return state


def facts(order_id: str, *, priority: int = 50, category: str = "groceries") -> o.OrderFacts:
    return o.OrderFacts(
        order_id=order_id,
        household_id=f"hh-{order_id}",
        grid_id="g1",
        category=o.Category(category),
        items="米",
        priority=priority,
        address="3号楼2单元501",
        handoff_code="1234",
        placed_at=T0,
    )


def ref(order_id: str) -> d.OrderRef:
    return d.OrderRef(order_id=order_id, household_id=f"hh-{order_id}", grid_id="g1")


def summary(state: Documents, now: datetime = T0) -> dict[str, Any]:
    doc = state.get(COMMUNITIES, state.community_id)
    assert doc is not None
    return views.summary(doc, now)


def on_duty(state: Documents, vid: str, at: datetime = T0, hours: int = 4) -> None:
    until = at + timedelta(hours=hours)
    hear(
        state, v.ShiftStarted(volunteer_id=vid, shift_id=f"s-{vid}", grid_id="g1", until=until), at
    )


def approved(state: Documents, vid: str, unit: str | None) -> None:
    hear(
        state,
        v.VolunteerApproved(
            volunteer_id=vid,
            name=vid,
            phone="13700000001",
            home_grid_id="g1",
            capacity=2,
            work_unit=unit,
        ),
    )


def test_an_order_delivered_is_counted_once_though_dispatch_and_orders_both_say_so() -> None:
    state = community()
    hear(state, o.OrderReceived(order=facts("o1"), channel="app"))
    assert summary(state)["open_orders"] == 1 and summary(state)["placed_today"] == 1

    hear(state, d.TaskDelivered(order=ref("o1"), volunteer_id="v1", proof="handoff_code"))
    hear(state, o.OrderStatusChanged(order_id="o1", household_id="hh-o1", status="delivered"))

    assert summary(state)["open_orders"] == 0
    assert summary(state)["delivered_today"] == 1


def test_a_cancelled_order_is_closed_and_not_delivered() -> None:
    state = community()
    hear(state, o.OrderReceived(order=facts("o1"), channel="app"))
    hear(state, o.OrderCancelled(order_id="o1", household_id="hh-o1", by_role="resident"))
    assert (summary(state)["open_orders"], summary(state)["delivered_today"]) == (0, 0)


def test_an_urgent_order_no_cadre_has_taken_makes_the_community_stand_out() -> None:
    state = community()
    on_duty(state, "v1")
    hear(state, o.OrderReceived(order=facts("o1", category="transfer"), channel="hotline"))
    assert summary(state)["urgent_waiting"] == 1
    assert "urgent_waiting" in summary(state)["trouble"]

    hear(state, d.TaskAssigned(order=ref("o1"), volunteer_id="v1", volunteer_name="李伟"))
    assert summary(state)["urgent_waiting"] == 0 and summary(state)["trouble"] == []


def test_open_orders_with_nobody_on_duty_stand_out() -> None:
    state = community()
    hear(state, o.OrderReceived(order=facts("o1"), channel="app"))
    assert summary(state)["trouble"] == ["nobody_on_duty"]
    on_duty(state, "v1")
    assert summary(state)["cadres_on_duty"] == 1 and summary(state)["trouble"] == []


def test_an_order_escalated_as_not_taken_is_late_and_one_waiting_an_hour_is_late_too() -> None:
    state = community()
    on_duty(state, "v1")
    hear(state, o.OrderReceived(order=facts("o1"), channel="app"))
    hear(state, o.OrderReceived(order=facts("o2"), channel="app"))
    escalated = d.OrderEscalated(
        order=ref("o1"),
        grid_worker="王芳",
        grid_worker_phone="13800000001",
        reason="not taken after 30 minutes",
    )
    hear(state, escalated)
    now = summary(state, T0 + timedelta(minutes=30))
    assert (now["escalated_orders"], now["late_orders"]) == (1, 1)
    later = summary(state, T0 + timedelta(minutes=61))
    assert later["late_orders"] == 2 and set(later["trouble"]) == {"escalated", "late"}


def test_households_not_reached_count_each_door_answered_once_and_a_closed_round_drops_out() -> (
    None
):
    state = community()
    started = c.CampaignStarted(
        campaign_id="r1", title="核酸", grid_ids=["g1"], household_count=3, walk_list_count=1
    )
    hear(state, started)

    def visit(hh: str, outcome: c.Outcome) -> c.DoorVisited:
        return c.DoorVisited(
            campaign_id="r1", household_id=hh, grid_id="g1", outcome=outcome, needs=[], order_ids=[]
        )

    hear(state, visit("h1", c.Outcome.answered))
    hear(state, visit("h1", c.Outcome.answered))  # a second visit to the same door
    hear(state, visit("h2", c.Outcome.no_answer))
    assert summary(state)["not_reached"] == 2

    hear(state, c.CampaignClosed(campaign_id="r1", reason=None, not_reached=2))
    assert summary(state)["not_reached"] == 0 and summary(state)["rounds"] == []


def test_communities_in_trouble_come_first_and_the_totals_add_up() -> None:
    calm, busy = community("anning"), community("datong")
    on_duty(calm, "v1")
    hear(busy, o.OrderReceived(order=facts("o1", priority=90), channel="app"))
    docs = [s.get(COMMUNITIES, s.community_id) for s in (calm, busy)]
    seen = views.overview([x for x in docs if x], T0)
    assert [r["community_id"] for r in seen["communities"]] == ["datong", "anning"]
    assert seen["totals"]["in_trouble"] == 1 and seen["totals"]["open_orders"] == 1
    assert seen["totals"]["cadres_on_duty"] == 1


def test_days_are_the_communitys_own_a_delivery_after_midnight_in_beijing_is_tomorrow() -> None:
    state = community()
    late_evening_utc = datetime(2022, 4, 10, 16, 30, tzinfo=UTC)  # 00:30 on the 11th
    hear(state, o.OrderReceived(order=facts("o1"), channel="app"), late_evening_utc)
    doc = state.get(COMMUNITIES, "datong")
    assert doc is not None and doc["placed_by_day"] == {"2022-04-11": 1}


def mobilised(
    states: list[Documents], now: datetime, day: str | None = None
) -> list[dict[str, Any]]:
    cadres = [{**x} for s in states for x in s.values(CADRES)]
    communities = {s.community_id: s.get(COMMUNITIES, s.community_id) or {} for s in states}
    return views.mobilisation(cadres, communities, now, day)


def test_a_work_units_cadres_count_once_with_the_communities_they_reported_to() -> None:
    a, b = community("anning"), community("datong")
    approved(a, "v1", "市生态环境局")
    approved(b, "v2", "市生态环境局")
    approved(b, "v3", "区税务局")
    on_duty(a, "v1", T0, hours=2)
    hear(
        a,
        v.ShiftEnded(volunteer_id="v1", shift_id="s-v1", reason="checked_out"),
        T0 + timedelta(hours=1),
    )
    hear(b, d.TaskDelivered(order=ref("o1"), volunteer_id="v2", proof="handoff_code"))
    hear(b, d.TaskDelivered(order=ref("o2"), volunteer_id="v2", proof="handoff_code"))

    rows = mobilised([a, b], T0 + timedelta(hours=3))

    bureau = rows[0]
    assert bureau["work_unit"] == "市生态环境局"
    assert (bureau["cadres"], bureau["communities"]) == (2, 2)
    assert (bureau["hours"], bureau["tasks_done"]) == (1.0, 2)
    assert bureau["cadres_by_community"] == {"anning社区": 1, "datong社区": 1}
    assert rows[1]["work_unit"] == "区税务局" and rows[1]["cadres"] == 1


def test_a_night_shift_serves_on_both_local_days_an_expired_one_counts_to_its_planned_end() -> None:
    state = community()
    approved(state, "v1", "局")
    evening = datetime(2022, 4, 10, 14, 0, tzinfo=UTC)  # 22:00 in Beijing
    on_duty(state, "v1", evening, hours=4)  # until 02:00 the next day
    # The timer checks it out an hour after its end: counted to 02:00, not 03:00.
    hear(
        state,
        v.ShiftEnded(volunteer_id="v1", shift_id="s-v1", reason="expired"),
        evening + timedelta(hours=5),
    )
    now = evening + timedelta(hours=6)
    assert mobilised([state], now, "2022-04-10")[0]["hours"] == 2.0
    assert mobilised([state], now, "2022-04-11")[0]["hours"] == 2.0
    assert mobilised([state], now)[0]["hours"] == 4.0
    assert mobilised([state], now, "2022-04-12") == []  # did not serve that day


def test_a_shift_still_running_counts_up_to_now() -> None:
    state = community()
    approved(state, "v1", "局")
    on_duty(state, "v1", T0, hours=8)
    assert mobilised([state], T0 + timedelta(minutes=90))[0]["hours"] == 1.5


def test_the_mobilisation_csv_has_chinese_headers_and_a_bom_for_excel() -> None:
    rows = [
        {
            "work_unit": "市生态环境局",
            "cadres": 33,
            "communities": 16,
            "cadres_by_community": {"大同社区": 3},
            "hours": 120.5,
            "tasks_done": 410,
        },
        {
            "work_unit": None,
            "cadres": 1,
            "communities": 1,
            "cadres_by_community": {"大同社区": 1},
            "hours": 0.0,
            "tasks_done": 0,
        },
    ]
    text = views.mobilisation_csv(rows, unnamed="(未填单位)")
    lines = text.splitlines()
    assert text.startswith("\ufeff单位")
    assert lines[1] == "市生态环境局,33,16,大同社区 3,120.5,410"
    assert lines[2].startswith("(未填单位),1,1")


def test_one_orders_events_in_any_order_give_the_same_picture() -> None:
    # They come on three topics, and nothing orders them across topics: a delivery may be
    # read before the order's placing, an escalation before it too.
    import itertools

    received = o.OrderReceived(order=facts("o1", category="transfer"), channel="hotline")
    escalated = d.OrderEscalated(
        order=ref("o1"), grid_worker="王芳", grid_worker_phone="13800000001", reason="no cadre"
    )
    assigned = d.TaskAssigned(order=ref("o1"), volunteer_id="v1", volunteer_name="李伟")
    delivered = d.TaskDelivered(order=ref("o1"), volunteer_id="v1", proof="handoff_code")
    said = o.OrderStatusChanged(order_id="o1", household_id="hh-o1", status="delivered")
    for events in itertools.permutations([received, escalated, assigned, delivered, said]):
        state = community()
        for payload in events:
            hear(state, payload)
        seen = summary(state)
        assert (seen["open_orders"], seen["placed_today"], seen["delivered_today"]) == (0, 1, 1)
    heard_first = community()
    hear(heard_first, escalated)  # its placing not read yet
    assert summary(heard_first, T0 + timedelta(hours=2))["open_orders"] == 1
    for events in itertools.permutations([received, escalated]):
        state = community()
        for payload in events:
            hear(state, payload)
        seen = summary(state)
        assert (seen["open_orders"], seen["escalated_orders"], seen["urgent_waiting"]) == (1, 1, 1)


def test_a_sub_districts_name_is_one_however_it_was_typed() -> None:
    from shared.contracts.orders import sub_district_name

    typed = [
        "南关街道",
        " 南关街道　",
        "南关街道\u3000",
        "Nanguan  Subdistrict",
        "Ｎａｎｇｕａｎ Subdistrict",
    ]
    assert [sub_district_name(t) for t in typed] == [
        "南关街道",
        "南关街道",
        "南关街道",
        "Nanguan Subdistrict",
        "Nanguan Subdistrict",
    ]
    assert sub_district_name("  ") is None and sub_district_name(None) is None
