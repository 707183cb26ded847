"""The daily report the community office sends upward each evening, from the orders: pure,
so the API, the console's page and its CSV show the same figures.

A day is a UTC calendar day. Orders count on the day they were placed (by category and
status as they stand now); deliveries on the day they were delivered, by how long after
placing; households served are the distinct households with a delivery that day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, timedelta
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


def daily(orders: Iterable[dict[str, Any]], day: date) -> dict[str, Any]:
    placed = 0
    by_status: Counter[str] = Counter()
    by_category: dict[str, Counter[str]] = {}
    deliveries: Counter[str] = Counter({"within_1h": 0, "within_4h": 0, "later": 0})
    escalations = 0
    served: set[str] = set()
    served_no_smartphone: set[str] = set()
    for order in orders:
        if order["placed_at"].date() == day:
            placed += 1
            by_status[order["status"]] += 1
            by_category.setdefault(order["category"], Counter())[order["status"]] += 1
        escalation = order.get("escalation")
        if escalation and escalation["at"].date() == day:
            escalations += 1
        at = delivered_at(order)
        if at is not None and at.date() == day:
            deliveries[speed(order["placed_at"], at)] += 1
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
    }
