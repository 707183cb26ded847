"""Orders' rules, without I/O: priority, lifecycle, duplicates, contact cards, CSV rows."""

from __future__ import annotations

import csv
import io
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field, ValidationError

from shared.contracts.base import PHONE, normalise_phone
from shared.contracts.orders import Address, Category, HouseholdFlag, HouseholdInput

# --- priority: higher is more urgent (0..100) ------------------------------------------

CATEGORY_PRIORITY: dict[Category, int] = {
    Category.transfer: 80,  # a close contact to isolation, at once (the 03:40 call)
    Category.medicine: 60,
    Category.home_test: 50,
    Category.groceries: 30,
    Category.app_help: 20,
    Category.visit: 20,
    Category.other: 20,
    Category.garbage: 10,
}
FLAG_PRIORITY: dict[HouseholdFlag, int] = {
    HouseholdFlag.elderly_alone: 25,
    HouseholdFlag.disabled: 15,
    HouseholdFlag.no_smartphone: 5,
    HouseholdFlag.home_isolation: 5,
    HouseholdFlag.close_contact: 5,
}


def priority(category: Category, flags: list[HouseholdFlag]) -> int:
    """Medicine for an elderly person living alone ranks above vegetables."""
    return min(100, CATEGORY_PRIORITY[category] + sum(FLAG_PRIORITY[f] for f in set(flags)))


# --- lifecycle -------------------------------------------------------------------------


class Status(StrEnum):
    held = "held"  # waiting for staff review (policy or a likely duplicate)
    received = "received"
    accepted = "accepted"
    assigned = "assigned"
    picked_up = "picked_up"
    delivered = "delivered"
    failed = "failed"
    cancelled = "cancelled"


FINAL = frozenset({Status.delivered, Status.cancelled})
# Dispatch holds a task for these: it decides whether a cancel still holds.
WITH_DISPATCH = frozenset({Status.accepted, Status.assigned, Status.picked_up})
OPEN = frozenset(set(Status) - FINAL - {Status.failed})

# Which status an incoming dispatch fact may move an order from.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    # back from a cadre (failed and re-opened; or released: off duty, moved by staff)
    Status.accepted: frozenset(
        {Status.received, Status.held, Status.failed, Status.assigned, Status.picked_up}
    ),
    Status.assigned: frozenset({Status.accepted}),
    Status.picked_up: frozenset({Status.assigned}),
    Status.delivered: frozenset({Status.assigned, Status.picked_up}),
    Status.failed: frozenset({Status.assigned, Status.picked_up}),
    Status.cancelled: frozenset(
        {
            Status.held,
            Status.received,
            Status.accepted,
            Status.assigned,
            Status.picked_up,
            Status.failed,
        }
    ),
}


def can_move(current: Status, to: Status) -> bool:
    return current in TRANSITIONS.get(to, frozenset())


def cancel_refusal(current: Status, role: str) -> str | None:
    """Why this role may not cancel now, or None. Residents may cancel until pickup."""
    if current in FINAL:
        return f"the order is already {current}"
    if role == "resident" and current is Status.picked_up:
        return "a volunteer has already picked it up; call the community to cancel"
    return None


@dataclass(frozen=True)
class RecentOrder:
    order_id: str
    category: Category
    status: Status
    placed_at: datetime


def likely_duplicate(
    recent: list[RecentOrder], category: Category, now: datetime, window: timedelta
) -> str | None:
    """An open order of the same household and category placed within the window."""
    for order in recent:
        if order.category == category and order.status in OPEN and now - order.placed_at <= window:
            return order.order_id
    return None


# --- codes -----------------------------------------------------------------------------

# No 0/O, 1/I/L, 2/Z, 5/S, 8/B, 6/G: read aloud over the phone or off a card, unambiguous.
# Read aloud over a phone without doubt: no 0/O, 1/I/L, 2/Z, 5/S, 6/G, 8/B.
CARD_ALPHABET = "ACDEFHJKMNPQRTUVWXY3479"
CARD_LENGTH = 6  # five random characters and a check character


def check_character(body: str) -> str:
    """A weighted sum modulo 23, the alphabet's size and a prime: each position has its own
    weight (2, 3, 4, …; the check character 1), so any single mistyped character and any
    two neighbours swapped (the check character included) leave a code that does not fit.
    (Luhn mod N would miss some: it needs an even alphabet.)"""
    n = len(CARD_ALPHABET)
    total = sum((i + 2) * CARD_ALPHABET.index(c) for i, c in enumerate(body))
    return CARD_ALPHABET[-total % n]


def new_card_code() -> str:
    body = "".join(secrets.choice(CARD_ALPHABET) for _ in range(CARD_LENGTH - 1))
    return body + check_character(body)


def card_code_fits(code: str) -> bool:
    return (
        len(code) == CARD_LENGTH
        and all(c in CARD_ALPHABET for c in code)
        and check_character(code[:-1]) == code[-1]
    )


def normalise_card_code(raw: str) -> str:
    return re.sub(r"[\s-]", "", raw).upper()


def new_handoff_code() -> str:
    return f"{secrets.randbelow(10_000):04d}"


# --- CSV import ------------------------------------------------------------------------

CSV_COLUMNS = ("compound", "building", "unit", "room", "grid", "phone", "flags", "relative_phones")
OPTIONAL_COLUMNS = ("flags", "relative_phones")
RELATIVES = 5  # phones besides the household's own that may sign in for it
MAX_FIELD = 100


class _Row(BaseModel):
    compound: str = Field(min_length=1, max_length=MAX_FIELD)
    building: str = Field(min_length=1, max_length=MAX_FIELD)
    unit: str = Field(min_length=1, max_length=MAX_FIELD)
    room: str = Field(min_length=1, max_length=MAX_FIELD)
    grid: str = Field(min_length=1, max_length=MAX_FIELD)
    phone: str = Field(default="", max_length=MAX_FIELD)
    flags: list[HouseholdFlag] = Field(default_factory=list)
    relative_phones: str = Field(default="", max_length=MAX_FIELD)


def phones_in(text: str) -> list[str] | None:
    """Relatives' phones as a cell holds them ("139 1234 5678; 0086 138…"), each in the
    form the household's own is kept; None when one of them is not a phone."""
    phones = [normalise_phone(p) for p in text.replace(",", ";").split(";") if p.strip()]
    if len(phones) > RELATIVES or not all(PHONE.match(p) for p in phones):
        return None
    return list(dict.fromkeys(phones))


@dataclass
class ParsedCsv:
    rows: list[HouseholdInput] = field(default_factory=list)
    rejected: list[dict[str, object]] = field(default_factory=list)


class CsvHeaderError(ValueError):
    """The CSV as a whole cannot be read (its header, or its quoting): nothing is imported."""


def parse_households_csv(text: str, known_grids: set[str]) -> ParsedCsv:
    """Each good row becomes a HouseholdInput; each bad one a {line, reason}."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in CSV_COLUMNS if c not in OPTIONAL_COLUMNS and c not in header]
    if missing:
        raise CsvHeaderError(f"missing column(s): {', '.join(missing)}; expected {CSV_COLUMNS}")
    reader.fieldnames = header
    result = ParsedCsv()
    seen: dict[str, int] = {}
    records = iter(reader)
    while True:
        try:
            record = next(records)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field beyond the parser's 131,072 characters
            raise CsvHeaderError(f"after line {reader.line_num}: {exc}") from exc
        line = reader.line_num
        if None in record:
            result.rejected.append({"line": line, "reason": "too many fields"})
            continue
        values = {k: (v or "").strip() for k, v in record.items()}
        flags = [
            f.strip() for f in values.get("flags", "").replace(",", ";").split(";") if f.strip()
        ]
        try:
            row = _Row.model_validate({**values, "flags": flags})
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            result.rejected.append({"line": line, "reason": reason})
            continue
        # No phone at all is allowed: exactly the households cards and door-knocks are for.
        phone = normalise_phone(row.phone) or None
        if phone is not None and not PHONE.match(phone):
            result.rejected.append({"line": line, "reason": f"phone: malformed {row.phone!r}"})
            continue
        relatives = phones_in(row.relative_phones)
        if relatives is None:
            result.rejected.append(
                {
                    "line": line,
                    "reason": f"relative_phones: at most {RELATIVES} phones, separated by ';'",
                }
            )
            continue
        if row.grid not in known_grids:
            result.rejected.append({"line": line, "reason": f"grid: unknown grid {row.grid!r}"})
            continue
        key = address_key(
            Address(compound=row.compound, building=row.building, unit=row.unit, room=row.room)
        )
        if key in seen:
            result.rejected.append({"line": line, "reason": f"same address as line {seen[key]}"})
            continue
        seen[key] = line
        result.rows.append(
            HouseholdInput(
                line=line,
                address=Address(
                    compound=row.compound, building=row.building, unit=row.unit, room=row.room
                ),
                grid_id=row.grid,
                phone=phone,
                flags=row.flags,
                relative_phones=relatives,
            )
        )
    return result


def address_key(address: Address) -> str:
    """One flat however it is written: full-width digits and letters made plain, letter
    case and every space ignored ('民主路 小区 ８' is '民主路小区 8')."""
    return "|".join(
        "".join(unicodedata.normalize("NFKC", p).casefold().split())
        for p in (address.compound, address.building, address.unit, address.room)
    )


def idempotency_id(household_id: str, role: str, actor: str, key: str) -> str:
    """Keys are scoped to whom the order is for, whatever the token's subject: a
    household's own key space, and each staff member's within it."""
    who = f"staff:{actor}" if role == "staff" else "resident"
    return f"{household_id}|{who}|{key}"


def window(minutes: int) -> timedelta:
    return timedelta(minutes=minutes)
