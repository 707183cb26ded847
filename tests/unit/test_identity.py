"""Sign-in's rules, pure: codes, their limits, sessions and who a phone is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.identity import domain
from services.identity.directory import facts_of
from services.identity.handlers import CODES, SESSIONS, IdentityRules
from shared.commands import Outcome
from shared.contracts import identity as i
from shared.contracts import orders as o
from shared.events import Event
from shared.owner import Documents

SECRET = "unit-identity-secret-unit-identity-secret"
PHONE = "8613912345678"
T0 = datetime(2022, 5, 28, 3, 40, tzinfo=UTC)


class Account:
    """One phone's state and the rules, fed commands as the owner feeds them."""

    def __init__(self, per_hour: int = 5) -> None:
        self.rules = IdentityRules(SECRET, per_hour)
        self.state = Documents(PHONE, {})
        self.directory: list[i.Identity] = []  # what the other services' events say
        self.n = 0

    def __call__(self, payload: i.IdentityCommand, at: datetime = T0) -> Outcome:
        decide = self.rules.table()[type(payload)]
        event = Event(id=payload.command_id, source="/t", community_id=PHONE, data=payload)
        decision = decide(self.state, event, at)
        self.events = decision.events
        assert decision.outcome is not None
        return decision.outcome

    def cid(self) -> str:
        self.n += 1
        return f"cmd{self.n}"

    def be(self, identity: i.Identity) -> None:
        self.directory.append(identity)

    def named(self, identity: i.Identity, present: bool = True, at: datetime = T0) -> Outcome:
        """Staff or ops, as people named them (the owner's own decision)."""
        return self(
            i.Learn(
                command_id=self.cid(),
                account=PHONE,
                identity=identity,
                present=present,
                at=at,
                source="test",
            )
        )

    def ask(self, at: datetime = T0) -> tuple[Outcome, str]:
        cid = self.cid()
        asked = i.RequestCode(command_id=cid, account=PHONE, directory=self.directory)
        return self(asked, at), domain.code_for(SECRET, cid)

    def verify(self, code: str, at: datetime = T0, as_: str | None = None) -> Outcome:
        mac = domain.code_mac(SECRET, PHONE, code)
        return self(
            i.VerifyCode(
                command_id=self.cid(),
                account=PHONE,
                code_mac=mac,
                identity_id=as_,
                directory=self.directory,
            ),
            at,
        )

    def refresh(self, body: dict[str, Any], at: datetime = T0, as_: str | None = None) -> Outcome:
        return self(
            i.Refresh(
                command_id=self.cid(),
                account=PHONE,
                session_id=body["session_id"],
                generation=body["generation"],
                identity_id=as_,
                directory=self.directory,
            ),
            at,
        )


RESIDENT = i.Identity.of("resident", "datong", "hh_1", name="8-2-301")
CADRE = i.Identity.of("volunteer", "datong", "vol_1", name="Li Wei")
STAFF = i.Identity.of("staff", "datong", name="Wang Fang")


def test_a_code_signs_in_once_and_the_answer_is_the_same_for_an_unknown_phone() -> None:
    unknown = Account()
    asked, _ = unknown.ask()
    known = Account()
    known.be(RESIDENT)
    answered, code = known.ask()
    assert asked == answered and asked.status == 200
    assert [e.known for e in unknown.events] == [False]  # nothing is texted to it
    signed = known.verify(code)
    assert signed.status == 200 and signed.body is not None
    assert signed.body["identity"]["identity_id"] == "resident:datong:hh_1"
    assert known.verify(code).status == 401  # used


def test_a_code_is_stored_as_a_mac_and_ends_after_five_minutes_or_five_wrong_tries() -> None:
    phone = Account()
    phone.be(RESIDENT)
    _, code = phone.ask()
    stored = phone.state.get(CODES, PHONE)
    assert stored is not None and code not in str(stored)
    assert phone.verify(code, T0 + domain.CODE_LIFETIME).status == 401
    _, code = phone.ask()
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    answers = [phone.verify(wrong) for _ in range(5)]
    assert [a.status for a in answers] == [401] * 5
    assert "last try" in (answers[-1].detail or "")
    assert phone.verify(code).status == 401  # the sixth try, the right code: too late


def test_a_phone_gets_a_few_codes_an_hour_then_429_with_when_to_retry() -> None:
    phone = Account(per_hour=3)
    times = [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert [phone.ask(t)[0].status for t in times] == [200, 200, 200]
    refused, _ = phone.ask(T0 + timedelta(minutes=3))
    assert refused.status == 429 and refused.body == {"retry_after": 57 * 60 + 1}
    assert phone.ask(T0 + timedelta(minutes=61))[0].status == 200


def test_a_refresh_token_works_once_and_a_second_use_ends_the_session() -> None:
    phone = Account()
    phone.be(CADRE)
    _, code = phone.ask()
    first = phone.verify(code).body
    assert first is not None
    second = phone.refresh(first).body
    assert second is not None and second["generation"] == 2
    replayed = phone.refresh(first)  # a stolen copy, or the holder after the thief
    assert replayed.status == 401 and "twice" in (replayed.detail or "")
    assert phone.refresh(second).status == 401  # the whole session ended
    assert phone.state.get(SESSIONS, first["session_id"])["revoked"]  # type: ignore[index]


def test_a_cadre_removed_loses_access_at_the_next_refresh() -> None:
    phone = Account()
    phone.be(CADRE)
    _, code = phone.ask()
    session = phone.verify(code).body
    assert session is not None
    phone.directory.remove(CADRE)  # the directory no longer says this phone is the cadre
    assert phone.refresh(session).status == 401


def test_staff_removed_lose_access_and_a_late_copy_of_an_older_naming_changes_nothing() -> None:
    phone = Account()
    phone.named(STAFF, at=T0)
    _, code = phone.ask()
    session = phone.verify(code).body
    assert session is not None and session["identity"]["identity_id"] == "staff:datong"
    phone.named(STAFF, present=False, at=T0 + timedelta(minutes=1))
    assert phone.named(STAFF, present=True, at=T0).body == {"changed": False}
    assert phone.refresh(session).status == 401


def test_a_phone_that_is_two_people_chooses_after_sign_in() -> None:
    phone = Account()
    phone.be(RESIDENT)
    phone.be(CADRE)
    _, code = phone.ask()
    session = phone.verify(code).body
    assert session is not None and session["identity"] is None
    assert {x["identity_id"] for x in session["identities"]} == {
        "resident:datong:hh_1",
        "volunteer:datong:vol_1",
    }
    assert phone.refresh(session).status == 409  # choose first
    acting = phone.refresh(session, as_="volunteer:datong:vol_1").body
    assert acting is not None and acting["identity"]["role"] == "volunteer"
    assert phone.refresh(acting, as_="staff:datong").status == 403  # not this phone


def test_sign_out_everywhere_ends_every_session_of_the_phone() -> None:
    phone = Account()
    phone.be(RESIDENT)
    sessions = []
    for _ in range(2):
        _, code = phone.ask()
        sessions.append(phone.verify(code).body)
    assert phone(i.SignOut(command_id="out", account=PHONE)).body == {"signed_out": 2}
    assert all(phone.refresh(s).status == 401 for s in sessions if s)


def test_refresh_tokens_are_ours_only() -> None:
    token = domain.RefreshToken(PHONE, "s1", 3)
    raw = domain.refresh_token(SECRET, token)
    assert domain.read_refresh_token(SECRET, raw) == token
    assert domain.read_refresh_token("another-secret" * 3, raw) is None
    assert domain.read_refresh_token(SECRET, raw.replace(".3.", ".4.")) is None
    assert domain.read_refresh_token(SECRET, "x.y") is None


def test_phones_have_one_normal_form() -> None:
    same = ["+86 139-1234-5678", "0086 13912345678", "13912345678", "１３９１２３４５６７８"]
    assert {i.phone_account(p) for p in same} == {PHONE}
    assert i.phone_account("not a phone") is None and i.phone_account("²") is None


def test_grid_workers_phones_come_from_the_community_definition() -> None:
    grid = o.Grid(grid_id="g3", name="Grid 3", grid_worker="Zhao", grid_worker_phone="13800000003")
    defined = o.CommunityDefined(community_id="datong", name="Datong", grids=[grid])
    ((identity, accounts),) = facts_of("datong", defined)
    assert identity.identity_id == "grid_worker:datong:g3" and accounts == {"8613800000003"}


def test_a_households_phones_and_its_relatives_all_sign_in_for_it() -> None:
    registered = o.HouseholdRegistered(
        household_id="hh_1",
        grid_id="g1",
        address="8-2-301",
        phone="139 1234 5678",
        card_code="K7M2AC",
        relative_phones=["+8613800000001", "0086 13800000002"],
    )
    ((identity, accounts),) = facts_of("datong", registered)
    assert identity.name == "8-2-301"
    assert accounts == {PHONE, "8613800000001", "8613800000002"}
