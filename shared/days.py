"""Time split by a community's own days: attendance and mobilisation count local days (a
night shift counts on both days it spans), not UTC ones."""

from __future__ import annotations

from datetime import datetime, time, timedelta, tzinfo


def seconds_by_day(start: datetime, end: datetime, here: tzinfo) -> dict[str, float]:
    """Seconds from ``start`` to ``end`` by the local date (ISO) they fall on in ``here``."""
    end = max(start, end).astimezone(here)
    days: dict[str, float] = {}
    moment = start.astimezone(here)
    while moment < end:
        midnight = datetime.combine(moment.date() + timedelta(days=1), time(), here)
        step = min(end, midnight)
        days[moment.date().isoformat()] = (step - moment).total_seconds()
        moment = step
    return days


def add_days(total: dict[str, float], more: dict[str, float]) -> dict[str, float]:
    return {day: total.get(day, 0.0) + more.get(day, 0.0) for day in total.keys() | more.keys()}
