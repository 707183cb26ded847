"""The daily report the community office sends upward each evening, from the orders: pure,
so the API, the console's page and its CSV show the same figures.

A day is the community's own calendar day (its clock; Beijing time by default).
Orders count on the day they were placed (by category and status as they stand now);
deliveries on the day they were delivered, by how long after placing; every escalation on
the day it happened (an order escalated on two days counts on both); households served are
the distinct households with a delivery that day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

HOUR = timedelta(hours=1)
WITHIN = (("within_1h", HOUR), ("within_4h", 4 * HOUR))


def delivered_at(order: dict[str, Any]) -> datetime | None:
    if order.get("status") != "delivered":
        return None
    moments = [h["at"] for h in order.get("history", []) if h["status"] == "delivered"]
    return moments[-1] if moments else order.get("updated_at")


def speed(placed: datetime, delivered: datetime) -> str:
    for name, limit in WITHIN:
        if delivered - placed <= limit:
            return name
    return "later"


def daily(orders: Iterable[dict[str, Any]], day: date, clock: tzinfo = UTC) -> dict[str, Any]:
    def on_day(at: datetime) -> bool:
        return at.astimezone(clock).date() == day

    placed = 0
    by_status: Counter[str] = Counter()
    by_category: dict[str, Counter[str]] = {}
    deliveries: Counter[str] = Counter({"within_1h": 0, "within_4h": 0, "later": 0})
    escalations = 0
    served: set[str] = set()
    served_no_smartphone: set[str] = set()
    hours: dict[str, dict[str, list[int]]] = {}  # grid -> placed / delivered per local hour

    def count(grid: str, what: str, at: datetime) -> None:
        per_grid = hours.setdefault(grid, {"placed": [0] * 24, "delivered": [0] * 24})
        per_grid[what][at.astimezone(clock).hour] += 1

    for order in orders:
        if on_day(order["placed_at"]):
            count(order["grid_id"], "placed", order["placed_at"])
            placed += 1
            by_status[order["status"]] += 1
            by_category.setdefault(order["category"], Counter())[order["status"]] += 1
        escalated = order.get("escalations") or (
            [order["escalation"]] if order.get("escalation") else []
        )
        escalations += sum(1 for e in escalated if on_day(e["at"]))
        at = delivered_at(order)
        if at is not None and on_day(at):
            deliveries[speed(order["placed_at"], at)] += 1
            count(order["grid_id"], "delivered", at)
            served.add(order["household_id"])
            if order.get("no_smartphone"):
                served_no_smartphone.add(order["household_id"])
    return {
        "day": day.isoformat(),
        "orders_placed": placed,
        "orders_by_status": dict(sorted(by_status.items())),
        "orders_by_category": {c: dict(sorted(s.items())) for c, s in sorted(by_category.items())},
        "delivered": sum(deliveries.values()),
        "delivered_within": dict(deliveries),
        "escalations": escalations,
        "households_served": len(served),
        "no_smartphone_households_served": len(served_no_smartphone),
        "by_hour": dict(sorted(hours.items())),
    }
