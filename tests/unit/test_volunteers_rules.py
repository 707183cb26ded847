"""Volunteers' rules as the owner feeds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.volunteers import domain
from services.volunteers.handlers import VolunteersRules
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.events import Event
from shared.owner import Decision, Documents, Rejection

T0 = datetime(2022, 5, 1, 8, 0, tzinfo=UTC)
RULES = VolunteersRules().table()


def decide(state: Documents, payload: Any, now: datetime = T0) -> Decision:
    return RULES[type(payload)](
        state, Event(source="/tests", community_id="datong", data=payload), now
    )


def community(auto_approve: bool) -> Documents:
    state = Documents("datong", {})
    grid = o.Grid(grid_id="g1", name="G1", grid_worker="Wang", grid_worker_phone="13800000001")
    policy = o.CommunityPolicy(auto_approve_volunteers=auto_approve)
    decide(
        state,
        o.CommunityDefined(community_id="datong", name="Datong", grids=[grid], policy=policy),
    )
    return state


def register(state: Documents, vid: str = "v1") -> Decision:
    return decide(
        state,
        v.RegisterVolunteer(
            command_id=f"reg-{vid}",
            actor=vid,
            volunteer_id=vid,
            name="Li Wei",
            phone="13700000001",
            compound="Datong Garden",
            home_grid_id="g1",
            work_unit="bureau",
            skills=[v.Skill.delivery],
            capacity=2,
        ),
    )


def test_a_registration_waits_for_staff_unless_the_community_approves_at_once() -> None:
    assert register(community(auto_approve=False)).events == []
    assert [type(e) for e in register(community(auto_approve=True)).events] == [v.VolunteerApproved]


def test_registering_twice_is_refused_with_409() -> None:
    state = community(auto_approve=True)
    register(state)
    with pytest.raises(Rejection) as refused:
        register(state)
    assert refused.value.status == 409


def test_a_shift_is_worked_from_check_in_to_check_out_and_counted_in_hours() -> None:
    state = community(auto_approve=True)
    register(state)
    until = T0 + timedelta(hours=4)
    started = decide(
        state, v.CheckIn(command_id="in1", actor="v1", volunteer_id="v1", grid_id="g1", until=until)
    )
    assert isinstance(started.events[0], v.ShiftStarted)
    ended = decide(
        state,
        v.CheckOut(command_id="out1", actor="v1", volunteer_id="v1", reason="checked_out"),
        T0 + timedelta(hours=1),
    )
    assert isinstance(ended.events[0], v.ShiftEnded)
    assert ended.outcome is not None and ended.outcome.body is not None
    assert ended.outcome.body["hours_worked"] == 1.0
    with pytest.raises(Rejection):  # no shift left to end
        decide(
            state,
            v.CheckOut(command_id="out2", actor="v1", volunteer_id="v1", reason="checked_out"),
        )


def test_shifts_past_their_end_are_found_in_memory() -> None:
    state = community(auto_approve=True)
    register(state)
    until = T0 + timedelta(hours=1)
    decide(
        state, v.CheckIn(command_id="in1", actor="v1", volunteer_id="v1", grid_id="g1", until=until)
    )
    assert domain.expired_shifts(state.values("volunteers"), T0) == []
    assert [d["_id"] for d in domain.expired_shifts(state.values("volunteers"), until)] == ["v1"]


def test_a_night_shift_counts_on_both_days_it_spans_and_stops_at_its_planned_end() -> None:
    start = datetime(2022, 5, 1, 22, 0, tzinfo=UTC)
    days = domain.worked_by_day(start, start + timedelta(hours=5), start + timedelta(hours=3))
    assert days == {"2022-05-01": 7200.0, "2022-05-02": 3600.0}
    assert domain.worked_by_day(start, start - timedelta(hours=1), start) == {}
    assert domain.add_days({"2022-05-01": 60.0}, days)["2022-05-01"] == 7260.0


def test_attendance_counts_the_communitys_own_day() -> None:
    # 06:00-10:00 in Beijing is 22:00-02:00 UTC: four hours on one day there, not two days.
    start = datetime(2022, 5, 27, 22, 0, tzinfo=UTC)
    end = start + timedelta(hours=4)
    beijing = domain.shift_clock({"utc_offset_minutes": 480})
    assert domain.worked_by_day(start, end, end, beijing) == {"2022-05-28": 4 * 3600.0}


def test_a_shift_kept_with_a_named_zone_counts_its_days_by_that_zones_summer_time() -> None:
    # 23:30-00:30 UTC in June is 00:30-01:30 in London (BST): all on the 2nd, not split.
    start = datetime(2024, 6, 1, 23, 30, tzinfo=UTC)
    end = start + timedelta(hours=1)
    london = domain.shift_clock({"utc_offset_minutes": 0, "time_zone": "Europe/London"})
    assert domain.worked_by_day(start, end, end, london) == {"2024-06-02": 3600.0}
    assert domain.worked_by_day(start, end, end, domain.shift_clock({})) == {
        "2024-06-01": 1800.0,
        "2024-06-02": 1800.0,
    }
