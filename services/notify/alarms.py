"""Night alarms: a close-contact transfer, or any urgent order, taken at night wakes the
on-call person. Their phone gets a text every ``repeat`` seconds, ``tries`` times, then the
next person on the list is woken (the last one is kept being woken), until someone
acknowledges: a reply of 0 from an on-call phone, or the console.

Stored as inserts only, like everything notify writes: the alarm once (by order), each
page once (by its number: two notify instances racing for page n send it once), the
acknowledgement once. Whom to wake next and when follows from those (``next_page``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.contracts.orders import Category, CommunityPolicy, OrderFacts

ACK_DIGIT = "0"


def is_night(policy: CommunityPolicy, at: datetime) -> bool:
    local = at.astimezone(policy.clock())
    hour = local.hour
    start, end = policy.night_from_hour, policy.night_until_hour
    return start <= hour < end if start <= end else hour >= start or hour < end


def wakes(order: OrderFacts, policy: CommunityPolicy, at: datetime) -> bool:
    urgent = order.category == Category.transfer or order.priority >= policy.urgent_priority
    return bool(policy.on_call) and urgent and is_night(policy, at)


@dataclass(frozen=True)
class Page:
    number: int
    person: dict[str, str]


def next_page(
    alarm: dict[str, Any],
    pages: int,
    last_at: datetime | None,
    acknowledged: bool,
    now: datetime,
    repeat: timedelta,
    tries: int,
) -> Page | None:
    """The page due now, if any: none once acknowledged, or before ``repeat`` has passed
    since the last one; the n-th page goes to person n // tries (the last one kept)."""
    if acknowledged or (last_at is not None and now - last_at < repeat):
        return None
    people = alarm["on_call"]
    return Page(pages, people[min(pages // tries, len(people) - 1)])


def page_text(alarm: dict[str, Any]) -> str:
    return (
        f"URGENT Doorstep {alarm['community_id']}: {alarm['summary']} "
        f"Reply {ACK_DIGIT} to take it (otherwise the next person on call is woken)."
    )
