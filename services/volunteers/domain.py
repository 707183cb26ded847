"""Volunteers' rules, without I/O: shifts and hours."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

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


def hours_worked(done_seconds: float, shift: dict | None, now: datetime) -> float:  # type: ignore[type-arg]
    current = worked_seconds(shift["started_at"], now, shift["until"]) if shift else 0.0
    return round((done_seconds + current) / 3600, 2)


def expired_shifts(volunteers: Iterable[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Volunteers whose shift is past its planned end: they are checked out."""
    return [doc for doc in volunteers if doc.get("shift") and doc["shift"]["until"] <= now]
