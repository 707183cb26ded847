"""Volunteers' rules, without I/O: shifts and hours."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from shared.contracts.orders import clock_of
from shared.days import add_days, seconds_by_day

MAX_SHIFT = timedelta(hours=24)


def check_in_refusal(status: str, on_duty: bool, until: datetime, now: datetime) -> str | None:
    if status != "approved":
        return "not approved yet: community staff approve registrations"
    if on_duty:
        return "already checked in; check out first"
    if until <= now:
        return "the shift must end in the future"
    if until - now > MAX_SHIFT:
        return "a shift lasts at most 24 hours"
    return None


def worked_seconds(started_at: datetime, ended_at: datetime, until: datetime) -> float:
    """Time on duty: a shift that expired counts until its planned end, not past it."""
    return max(0.0, (min(ended_at, until) - started_at).total_seconds())


def worked_by_day(
    started_at: datetime, ended_at: datetime, until: datetime, here: tzinfo = UTC
) -> dict[str, float]:
    """A shift's time on duty split by the community's own days (its clock), for
    attendance: a night shift counts on both days it spans."""
    return seconds_by_day(started_at, min(ended_at, until), here)


def shift_clock(shift: dict[str, Any]) -> tzinfo:
    """The clock of the community a shift was worked in (kept with the shift)."""
    return clock_of(shift.get("time_zone"), shift.get("utc_offset_minutes", 0))


def hours_by_day(done: dict[str, float], shift: dict | None, now: datetime) -> dict[str, float]:  # type: ignore[type-arg]
    current = (
        worked_by_day(shift["started_at"], now, shift["until"], shift_clock(shift)) if shift else {}
    )
    return {day: round(s / 3600, 2) for day, s in sorted(add_days(done, current).items())}


def hours_worked(done_seconds: float, shift: dict | None, now: datetime) -> float:  # type: ignore[type-arg]
    current = worked_seconds(shift["started_at"], now, shift["until"]) if shift else 0.0
    return round((done_seconds + current) / 3600, 2)


def expired_shifts(volunteers: Iterable[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Volunteers whose shift is past its planned end: they are checked out."""
    return [doc for doc in volunteers if doc.get("shift") and doc["shift"]["until"] <= now]
