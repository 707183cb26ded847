"""Sign-in's rules without I/O: one-time codes, their limits, and refresh tokens.

Nothing secret is stored or sent on Kafka. A code is derived from its id with the
service's secret (HMAC), so the rules stay pure and the SMS sender can make it again; what
is stored is the code's MAC, compared in constant time. A refresh token is the account,
the session, its generation and a MAC over them: the session's stored generation says
which one is current, so a token used twice (a stolen copy, or the holder after a thief)
is recognised and ends the whole session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

CODE_DIGITS = 6
CODE_LIFETIME = timedelta(minutes=5)
TRIES = 5  # wrong codes that end a code
WINDOW = timedelta(hours=1)  # codes per phone are counted over this
REFRESH_LIFETIME = timedelta(days=30)  # a session not refreshed this long ends


def _mac(secret: str, message: str) -> bytes:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()


def code_for(secret: str, code_id: str) -> str:
    number = int.from_bytes(_mac(secret, f"code:{code_id}")[:8], "big") % 10**CODE_DIGITS
    return f"{number:0{CODE_DIGITS}d}"


def code_mac(secret: str, account: str, code: str) -> str:
    return _mac(secret, f"typed:{account}:{code}").hex()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def retry_after(issued: list[datetime], now: datetime, per_hour: int) -> int | None:
    """Seconds until this phone may ask for another code; None if it may now."""
    recent = sorted(t for t in issued if now - t < WINDOW)
    if len(recent) < per_hour:
        return None
    return max(1, int((recent[-per_hour] + WINDOW - now).total_seconds()) + 1)


def recent(issued: list[datetime], now: datetime) -> list[datetime]:
    return [t for t in issued if now - t < WINDOW]


@dataclass(frozen=True)
class RefreshToken:
    account: str
    session_id: str
    generation: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def refresh_token(secret: str, token: RefreshToken) -> str:
    body = f"{token.account}.{token.session_id}.{token.generation}"
    return f"{body}.{_b64(_mac(secret, f'refresh:{body}'))}"


def read_refresh_token(secret: str, raw: str) -> RefreshToken | None:
    """The token's parts if the MAC is ours; None for anything else (malformed, forged)."""
    parts = raw.strip().split(".")
    if len(parts) != 4 or not parts[2].isascii() or not parts[2].isdigit():
        return None
    body = ".".join(parts[:3])
    if not same(parts[3], _b64(_mac(secret, f"refresh:{body}"))):
        return None
    generation = int(parts[2])
    if not 1 <= generation < 10**9:
        return None
    return RefreshToken(parts[0], parts[1], generation)
