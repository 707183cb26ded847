"""Identity's rules, pure: one explicit table from input type to decision. Keyed by
account (a phone, or a one-time link): the shared owner decides one account's inputs in
order and stores each decision as one log entry, like every other owner's."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.identity import domain
from shared.contracts import identity as i
from shared.decision import Change, Decide, Decision, Documents
from shared.events import Event
from shared.outcome import Outcome
from shared.topics import IDENTITY_EVENTS

ACCOUNTS, CODES, SESSIONS = "accounts", "codes", "sessions"


def refused(status: int, title: str, detail: str, **body: Any) -> Decision:
    """A refusal that may still change something (a wrong code counts): said as the
    outcome, with what changed put explicitly before it."""
    return Decision(outcome=Outcome(status=status, title=title, detail=detail, body=body or None))


def present(
    account: dict[str, Any] | None, directory: list[i.Identity] | None = None
) -> list[dict[str, Any]]:
    """Who the phone is: as named by people (the account's own state) and as the other
    services' events say (the directory, read when the command was sent)."""
    named = [x for x in (account or {}).get("identities", []) if x.get("present")]
    return named + [d.model_dump() for d in directory or []]


def summary(identity: dict[str, Any]) -> dict[str, Any]:
    return {k: identity.get(k) for k in ("identity_id", "role", "community_id", "name")}


def act_as(mine: list[dict[str, Any]], identity_id: str) -> tuple[dict[str, Any], bool] | None:
    """The identity (of ``mine``) a session may act as, and whether it is ops acting as
    staff of a community they opened (ops may open any)."""
    for x in mine:
        if x["identity_id"] == identity_id:
            return x, False
    ops = next((x for x in mine if x["role"] == "ops"), None)
    role, _, community_id = identity_id.partition(":")
    if ops is not None and role == "staff" and community_id and ":" not in community_id:
        staff = i.Identity.of("staff", community_id, name=ops.get("name")).model_dump()
        return staff, True
    return None


class IdentityRules:
    service: str = "identity"
    events_topic: str = IDENTITY_EVENTS
    collections: tuple[str, ...] = (ACCOUNTS, CODES, SESSIONS)

    def __init__(self, secret: str, codes_per_hour: int = 5) -> None:
        self.secret = secret
        self.codes_per_hour = codes_per_hour

    def table(self) -> Mapping[type[Any], Decide[Documents]]:
        return {
            i.RequestCode: self.request_code,
            i.VerifyCode: self.verify_code,
            i.ExchangeLink: self.exchange_link,
            i.Refresh: self.refresh,
            i.SignOut: self.sign_out,
            i.Learn: self.learn,
        }

    def restore(self, account: str, docs: dict[str, list[dict[str, Any]]]) -> Documents:
        return Documents(account, docs)

    def changes(self, state: Documents) -> list[Change]:
        return state.take_changes()

    # --- one-time codes ----------------------------------------------------------------

    def request_code(self, state: Documents, event: Event, now: datetime) -> Decision:
        cmd = event.data
        assert isinstance(cmd, i.RequestCode)
        codes = state.get(CODES, cmd.account) or {}
        issued = codes.get("issued", [])
        wait = domain.retry_after(issued, now, self.codes_per_hour)
        if wait is not None:
            return refused(
                429,
                "Too many codes",
                f"too many codes for this phone: try again in {wait} s",
                retry_after=wait,
            )
        expires = now + domain.CODE_LIFETIME
        code = domain.code_for(self.secret, cmd.command_id)
        state.put(
            CODES,
            {
                "_id": cmd.account,
                "code_id": cmd.command_id,
                "mac": domain.code_mac(self.secret, cmd.account, code),
                "expires_at": expires,
                "tries": 0,
                "used": False,
                "issued": [*domain.recent(issued, now), now],
            },
        )
        known = bool(present(state.get(ACCOUNTS, cmd.account), cmd.directory))
        issued_event = i.CodeIssued(
            account=cmd.account, code_id=cmd.command_id, known=known, expires_at=expires
        )
        # The same answer for a phone nobody registered: sign-in tells no one who is known.
        body = {"sent": True, "expires_in": int(domain.CODE_LIFETIME.total_seconds())}
        return Decision([issued_event], Outcome.ok(body))

    def verify_code(self, state: Documents, event: Event, now: datetime) -> Decision:
        cmd = event.data
        assert isinstance(cmd, i.VerifyCode)
        code = state.get(CODES, cmd.account)
        wrong = "Wrong code"
        if code is None or code["used"]:
            return refused(401, wrong, "no code is waiting for this phone: ask for a new one")
        if now >= code["expires_at"]:
            return refused(401, wrong, "the code has expired: ask for a new one")
        if code["tries"] >= domain.TRIES:
            return refused(401, wrong, "too many wrong codes: ask for a new one")
        if not domain.same(cmd.code_mac, code["mac"]):
            tries = code["tries"] + 1
            state.put(CODES, {**code, "tries": tries})
            left = domain.TRIES - tries
            if left == 0:
                return refused(
                    401, wrong, "wrong code, and that was the last try: ask for a new one"
                )
            return refused(401, wrong, f"wrong code: {left} tries left", tries_left=left)
        state.put(CODES, {**code, "used": True})
        mine = present(state.get(ACCOUNTS, cmd.account), cmd.directory)
        if not mine:
            return refused(403, "Not registered", "this phone is not registered in any community")
        return self._begin(state, cmd.account, cmd.command_id, mine, cmd.identity_id, now)

    def exchange_link(self, state: Documents, event: Event, now: datetime) -> Decision:
        cmd = event.data
        assert isinstance(cmd, i.ExchangeLink)
        if state.get(ACCOUNTS, cmd.account) is not None:
            return refused(401, "Link used", "this sign-in link was used already")
        if now >= cmd.expires_at:
            return refused(401, "Link expired", "this sign-in link has expired")
        # Ops are ops (acting as staff of the community they open), not that staff.
        named = i.Identity.of("ops", name=cmd.identity.name) if cmd.ops else cmd.identity
        found = [{**named.model_dump(), "present": True, "at": now, "source": "link"}]
        account = state.put(ACCOUNTS, {"_id": cmd.account, "identities": found})
        chosen = cmd.identity.identity_id
        return self._begin(state, cmd.account, cmd.command_id, present(account), chosen, now)

    def _begin(
        self,
        state: Documents,
        account_id: str,
        session_id: str,
        mine: list[dict[str, Any]],
        wanted: str | None,
        now: datetime,
    ) -> Decision:
        if wanted is None and len(mine) == 1:
            wanted = mine[0]["identity_id"]
        acting = act_as(mine, wanted) if wanted else None
        if wanted and acting is None:
            return refused(403, "Not yours", f"this phone is not {wanted}")
        session = state.put(
            SESSIONS,
            {
                "_id": session_id,
                "account": account_id,
                "generation": 1,
                "identity_id": wanted,
                "ops": bool(acting and acting[1]),
                "revoked": False,
                "created_at": now,
                "refreshed_at": now,
            },
        )
        return Decision(outcome=Outcome.ok(self._signed_in(session, mine, acting)))

    @staticmethod
    def _signed_in(
        session: dict[str, Any],
        mine: list[dict[str, Any]],
        acting: tuple[dict[str, Any], bool] | None,
    ) -> dict[str, Any]:
        """What the route makes tokens of (no secret in it: it is stored and published)."""
        return {
            "account": session["account"],
            "session_id": session["_id"],
            "generation": session["generation"],
            "identity": acting[0] if acting else None,
            "ops": bool(acting and acting[1]),
            "identities": [summary(x) for x in mine],
        }

    # --- sessions ------------------------------------------------------------------------

    def refresh(self, state: Documents, event: Event, now: datetime) -> Decision:
        cmd = event.data
        assert isinstance(cmd, i.Refresh)
        session = state.get(SESSIONS, cmd.session_id)
        if session is None or session["account"] != cmd.account:
            return refused(401, "Signed out", "no such session: sign in again")
        if session["revoked"]:
            return refused(401, "Signed out", "this session has ended: sign in again")
        if cmd.generation != session["generation"]:
            return self._end(state, session, "a refresh token was used twice", now)
        if now - session["refreshed_at"] > domain.REFRESH_LIFETIME:
            return self._end(state, session, "not used for too long", now)
        mine = present(state.get(ACCOUNTS, cmd.account), cmd.directory)
        wanted = cmd.identity_id or session["identity_id"]
        if wanted is None:
            return refused(
                409,
                "Choose",
                "this phone is more than one person: choose who to act as",
                identities=[summary(x) for x in mine],
            )
        acting = act_as(mine, wanted)
        if acting is None:
            if cmd.identity_id and cmd.identity_id != session["identity_id"]:
                return refused(403, "Not yours", f"this phone is not {wanted}")
            return self._end(state, session, f"no longer {wanted}", now)
        session = state.put(
            SESSIONS,
            {
                **session,
                "generation": session["generation"] + 1,
                "identity_id": wanted,
                "ops": acting[1],
                "refreshed_at": now,
            },
        )
        return Decision(outcome=Outcome.ok(self._signed_in(session, mine, acting)))

    def _end(
        self, state: Documents, session: dict[str, Any], reason: str, now: datetime
    ) -> Decision:
        state.put(SESSIONS, {**session, "revoked": True, "reason": reason, "ended_at": now})
        ended = i.SessionEnded(account=session["account"], session_id=session["_id"], reason=reason)
        outcome = Outcome.rejected(401, "Signed out", f"session ended: {reason}; sign in again")
        return Decision([ended], outcome)

    def sign_out(self, state: Documents, event: Event, now: datetime) -> Decision:
        cmd = event.data
        assert isinstance(cmd, i.SignOut)
        sessions = [
            s
            for s in state.values(SESSIONS)
            if not s["revoked"] and cmd.session_id in (None, s["_id"])
        ]
        ended = []
        for session in sessions:
            reason = "signed out everywhere" if cmd.session_id is None else "signed out"
            state.put(SESSIONS, {**session, "revoked": True, "reason": reason, "ended_at": now})
            ended.append(
                i.SessionEnded(account=cmd.account, session_id=session["_id"], reason=reason)
            )
        return Decision(list(ended), Outcome.ok({"signed_out": len(ended)}))

    # --- who a phone is ------------------------------------------------------------------

    def learn(self, state: Documents, event: Event, now: datetime) -> Decision:
        cmd = event.data
        assert isinstance(cmd, i.Learn)
        account = state.get(ACCOUNTS, cmd.account) or {"_id": cmd.account, "identities": []}
        known = {x["identity_id"]: x for x in account["identities"]}
        current = known.get(cmd.identity.identity_id)
        if current is not None and current["at"] >= cmd.at:
            return Decision(outcome=Outcome.ok({"changed": False}))  # older news, or a copy
        known[cmd.identity.identity_id] = {
            **cmd.identity.model_dump(),
            "present": cmd.present,
            "at": cmd.at,
            "source": cmd.source,
        }
        state.put(ACCOUNTS, {**account, "identities": list(known.values())})
        return Decision(outcome=Outcome.ok({"changed": True}))
