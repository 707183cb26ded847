"""Night alarms: who is woken, when, and when it stops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notify.alarms import is_night, next_page, wakes
from shared.contracts.orders import Category, CommunityPolicy, OnCall, OrderFacts

POLICY = CommunityPolicy(
    on_call=[OnCall(name="Li", phone="13600000001"), OnCall(name="Zhang", phone="13600000002")]
)
T0 = datetime(2022, 5, 28, 16, 0, tzinfo=UTC)  # midnight in Beijing
ALARM = {"on_call": [p.model_dump() for p in POLICY.on_call]}


def order(category: Category, priority: int) -> OrderFacts:
    return OrderFacts(
        order_id="o1",
        household_id="h1",
        grid_id="g1",
        category=category,
        items="x",
        priority=priority,
        address="1-1-101",
        handoff_code="1234",
        placed_at=T0,
    )


def test_night_is_the_communitys_local_night_across_midnight() -> None:
    assert is_night(POLICY, T0) and is_night(POLICY, T0 - timedelta(hours=2))  # 22:00
    assert not is_night(POLICY, T0 + timedelta(hours=8))  # 08:00 local
    assert not is_night(POLICY, T0 - timedelta(hours=3))  # 21:00 local


def test_a_named_zone_knows_summer_time_where_a_fixed_offset_does_not() -> None:
    summer_evening = datetime(2024, 7, 1, 21, 30, tzinfo=UTC)  # 22:30 in London (BST)
    assert is_night(
        CommunityPolicy(utc_offset_minutes=0, time_zone="Europe/London"), summer_evening
    )
    assert not is_night(CommunityPolicy(utc_offset_minutes=0), summer_evening)  # 21:30 "local"


def test_a_community_names_a_real_time_zone_or_is_refused() -> None:
    for wrong in ("Asia/Beijing", "../../etc/passwd", "", "UTC+8"):
        with pytest.raises(ValueError, match="time zone"):
            CommunityPolicy(time_zone=wrong)
    shanghai = CommunityPolicy(time_zone="Asia/Shanghai").clock()
    assert shanghai.utcoffset(datetime(2024, 7, 1)) == timedelta(hours=8)


def test_a_transfer_or_an_urgent_order_at_night_wakes_someone_and_nothing_else_does() -> None:
    assert wakes(order(Category.transfer, 10), POLICY, T0)
    assert wakes(order(Category.medicine, 85), POLICY, T0)
    assert not wakes(order(Category.medicine, 60), POLICY, T0)
    assert not wakes(order(Category.transfer, 80), POLICY, T0 + timedelta(hours=8))
    assert not wakes(order(Category.transfer, 80), CommunityPolicy(), T0)  # nobody on call


def test_pages_repeat_then_go_to_the_next_person_and_stop_when_taken() -> None:
    repeat = timedelta(minutes=3)
    people = []
    last = None
    now = T0
    for n in range(6):
        page = next_page(ALARM, n, last, False, now, repeat, tries=2)
        assert page is not None and page.number == n
        people.append(page.person["name"])
        assert next_page(ALARM, n + 1, now, False, now + timedelta(minutes=2), repeat, 2) is None
        last, now = now, now + repeat
    assert people == ["Li", "Li", "Zhang", "Zhang", "Zhang", "Zhang"]  # the last is kept
    assert next_page(ALARM, 6, last, True, now, repeat, 2) is None  # acknowledged: stop


async def test_an_instance_pages_from_the_on_call_list_of_today_not_one_it_cached_earlier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time as clock

    from services.notify import handlers
    from shared.contracts import orders as o

    lists = [["Li Wei"], ["Zhang Min"]]  # redefined while the community was elsewhere

    class GridWorkers:
        async def find_one(self, *args: Any, **kw: Any) -> dict[str, Any]:
            names = lists[0] if len(lists) == 1 else lists.pop(0)
            on_call = [{"name": n, "phone": "13600000000"} for n in names]
            return {"policy": {"on_call": on_call}}

    class Db(dict[str, Any]):
        def __missing__(self, name: str) -> object:
            return GridWorkers()

    owner = handlers.NotifyOwner(Db(), None)  # type: ignore[arg-type]
    now = clock.monotonic()
    monkeypatch.setattr(handlers.time, "monotonic", lambda: now)
    first = await owner.policy("datong")
    assert [p.name for p in first.on_call] == ["Li Wei"]
    monkeypatch.setattr(handlers.time, "monotonic", lambda: now + handlers.POLICY_FOR + 1)
    later = await owner.policy("datong")
    assert isinstance(later, o.CommunityPolicy) and [p.name for p in later.on_call] == ["Zhang Min"]
