"""Replies by phone keypad: what a text from a plain phone means. Pure.

A cadre answers their latest offer with 1 (accept) or 2 (decline) and marks it delivered
with D and the household's four-digit code; a resident replies 1 to confirm a delivery
arrived, or 9 to be called back. Anything else, or a number nobody registered, gets a
polite help text and changes nothing. Every message that asks for a reply says which
digits mean what (``VOLUNTEER_DIGITS``, ``HOUSEHOLD_DIGITS``)."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass

# Chinese first (the people are Chinese; many read nothing else), then English.
VOLUNTEER_DIGITS = (
    "回复1接受，2拒绝；送到门口回复D加取件码（如 D 4821）。"
    " Reply 1 to accept, 2 to decline; at the door, D and the code (D 4821)."
)
HOUSEHOLD_DIGITS = (
    "收到请回复1；需要社区给您打电话请回复9。"
    " Reply 1 when it has arrived, 9 and the community will call you."
)
HELP_VOLUNTEER = f"Doorstep: {VOLUNTEER_DIGITS}"
HELP_HOUSEHOLD = f"Doorstep: {HOUSEHOLD_DIGITS}"
HELP_UNKNOWN = (
    "Doorstep: 此号码未在本社区登记，请拨打联系卡上的热线。"
    " This number is not registered with a community here. Please call the "
    "hotline on your contact card."
)
SKEW_SECONDS = 300  # a signed request older or newer than this is refused
DELIVERY = re.compile(r"^\s*[dD]?\s*#?\s*([0-9]{4})\s*$")


@dataclass(frozen=True)
class Said:
    """What a text asks for: accept, decline, deliver (with a code), confirm, call_me."""

    intent: str
    code: str | None = None


def plain(text: str) -> str:
    """A text as typed on any keypad: full-width letters, digits and spaces made plain."""
    return unicodedata.normalize("NFKC", text).strip()


def from_volunteer(text: str) -> Said | None:
    text = plain(text)
    if text == "1":
        return Said("accept")
    if text == "2":
        return Said("decline")
    if (found := DELIVERY.match(text)) is not None:
        return Said("deliver", found.group(1))
    return None


def from_household(text: str) -> Said | None:
    return {"1": Said("confirm"), "9": Said("call_me")}.get(plain(text))


def phone_key(raw: str) -> str:
    """A number as the gateway gives it (+86 139 1234 5678, 0086…, full-width) as the
    directory keeps it."""
    digits = re.sub(r"[^0-9]", "", unicodedata.normalize("NFKC", raw))
    for prefix in ("0086", "86"):
        if len(digits) == 11 + len(prefix) and digits.startswith(prefix):
            return digits[len(prefix) :]
    return digits


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed(secret: str, timestamp: str, body: bytes, given: str, now: float) -> bool:
    """The gateway signed this body at this time with our secret, not long ago."""
    try:
        fresh = abs(now - int(timestamp)) <= SKEW_SECONDS
    except ValueError:
        return False
    # As bytes: a header with other characters is a wrong signature, not an error.
    expected = signature(secret, timestamp, body).encode()
    return fresh and hmac.compare_digest(expected, given.encode("utf-8", "replace"))
