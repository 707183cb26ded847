"""The daily report: what the office reports upward, from the orders as they stand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.orders.report import daily

DAY = date(2022, 5, 28)
MORNING = datetime(2022, 5, 28, 8, 0, tzinfo=UTC)


def order(
    household: str,
    status: str,
    *,
    category: str = "groceries",
    placed: datetime = MORNING,
    delivered_after: timedelta | None = None,
    no_smartphone: bool = False,
    escalated_at: datetime | None = None,
    grid: str = "g1",
) -> dict[str, Any]:
    history = [{"status": "received", "at": placed}]
    if delivered_after is not None:
        history.append({"status": "delivered", "at": placed + delivered_after})
    doc: dict[str, Any] = {
        "household_id": household,
        "grid_id": grid,
        "status": status,
        "category": category,
        "placed_at": placed,
        "history": history,
        "no_smartphone": no_smartphone,
    }
    if escalated_at is not None:
        doc["escalation"] = {"at": escalated_at, "reason": "no suitable volunteer on duty"}
    return doc


def test_orders_count_on_the_day_placed_and_deliveries_on_the_day_delivered_by_speed() -> None:
    orders = [
        order("h1", "delivered", category="medicine", delivered_after=timedelta(minutes=40)),
        order("h1", "delivered", delivered_after=timedelta(hours=3), no_smartphone=True),
        order("h2", "delivered", delivered_after=timedelta(hours=6), no_smartphone=True),
        order("h3", "assigned", escalated_at=MORNING + timedelta(minutes=10)),
        order("h4", "cancelled"),
        # Placed the evening before, delivered this morning: a delivery of this day only.
        order(
            "h5",
            "delivered",
            placed=MORNING - timedelta(hours=12),
            delivered_after=timedelta(hours=12, minutes=30),
        ),
    ]
    figures = daily(orders, DAY)
    assert figures["orders_placed"] == 5
    assert figures["orders_by_status"] == {"assigned": 1, "cancelled": 1, "delivered": 3}
    assert figures["orders_by_category"]["medicine"] == {"delivered": 1}
    assert figures["delivered"] == 4
    assert figures["delivered_within"] == {"within_1h": 1, "within_4h": 1, "later": 2}
    assert figures["escalations"] == 1
    assert figures["households_served"] == 3  # h1, h2, h5: h1 twice counts once
    assert figures["no_smartphone_households_served"] == 2


def test_another_day_has_nothing_of_this_one() -> None:
    figures = daily(
        [order("h1", "delivered", delivered_after=timedelta(minutes=5))], date(2022, 5, 29)
    )
    assert figures["orders_placed"] == 0 and figures["delivered"] == 0


def test_a_day_is_the_communitys_own_day_and_every_escalation_counts_on_its_day() -> None:
    beijing = ZoneInfo("Asia/Shanghai")
    # 06:30 in Beijing on the 29th is 22:30 UTC on the 28th: an order of the 29th there.
    early = order("h1", "accepted", placed=datetime(2022, 5, 28, 22, 30, tzinfo=UTC))
    twice = order("h2", "accepted", placed=MORNING)
    twice["escalations"] = [
        {"at": MORNING + timedelta(hours=1)},  # the 28th
        {"at": MORNING + timedelta(days=1)},  # and again the 29th
    ]
    twice["escalation"] = twice["escalations"][-1]
    on_28 = daily([early, twice], DAY, beijing)
    on_29 = daily([early, twice], DAY + timedelta(days=1), beijing)
    assert (on_28["orders_placed"], on_29["orders_placed"]) == (1, 1)
    assert (on_28["escalations"], on_29["escalations"]) == (1, 1)


def test_the_day_is_drawn_hour_by_hour_per_grid_in_the_communitys_clock() -> None:
    beijing = ZoneInfo("Asia/Shanghai")
    at_9 = datetime(2022, 5, 28, 1, 5, tzinfo=UTC)  # 09:05 in Beijing
    orders = [
        order("h1", "delivered", placed=at_9, delivered_after=timedelta(minutes=70), grid="g2"),
        order("h2", "accepted", placed=at_9 + timedelta(minutes=20), grid="g2"),
        order("h3", "accepted", placed=at_9 + timedelta(hours=5), grid="g1"),
    ]
    hours = daily(orders, DAY, beijing)["by_hour"]
    assert list(hours) == ["g1", "g2"]
    assert hours["g2"]["placed"][9] == 2 and sum(hours["g2"]["placed"]) == 2
    assert hours["g2"]["delivered"][10] == 1 and sum(hours["g2"]["delivered"]) == 1
    assert hours["g1"]["placed"][14] == 1 and sum(hours["g1"]["delivered"]) == 0
    assert daily(orders, DAY + timedelta(days=1), beijing)["by_hour"] == {}
