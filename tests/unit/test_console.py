"""The console's own logic: who is signed in, and the board's figures per grid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from services.console.overview import overview
from services.console.session import (
    Person,
    SignInRefused,
    SignIns,
    session_person,
    session_token,
    sign_in_link,
)
from shared.auth import Role, decode
from shared.problem import Problem

SECRET = "console-test-secret-console-test-secret"
NOW = datetime(2022, 5, 28, 10, 0, tzinfo=UTC)
COMMUNITY = {
    "grids": [
        {"grid_id": g, "name": f"Grid {g}", "grid_worker": f"W{g}", "neighbours": []}
        for g in ("g1", "g2")
    ]
}


def token_of(link: str) -> str:
    return link.split("?t=", 1)[1]


def test_a_sign_in_link_works_once_and_its_session_is_no_api_token() -> None:
    signs = SignIns(SECRET)
    link = sign_in_link(SECRET, "http://console", Person("Wang Fang", "datong", "g3"))
    person = signs.redeem(token_of(link))
    assert person == Person("Wang Fang", "datong", "g3") and person.role == "grid_worker"
    with pytest.raises(SignInRefused, match="used already"):
        signs.redeem(token_of(link))
    session = session_token(SECRET, person)
    assert session_person(SECRET, session) == person
    with pytest.raises(SignInRefused):  # a session is not a sign-in link
        signs.redeem(session)
    with pytest.raises(Problem):  # nor a bearer token any service accepts
        decode(SECRET, session)
    forged = jwt.encode({"sub": "x", "community": "datong"}, "another-secret" * 3, "HS256")
    with pytest.raises(SignInRefused):
        session_person(SECRET, forged)


def test_ops_keep_their_role_through_the_session_and_act_as_staff_of_what_they_open() -> None:
    ops = SignIns(SECRET).redeem(
        token_of(sign_in_link(SECRET, "http://console", Person("Li Ops", "datong", ops=True)))
    )
    assert ops.role == "ops" and session_person(SECRET, session_token(SECRET, ops)) == ops
    opened = ops.opening("anting")
    assert opened.ops and opened.community_id == "anting"
    principal = decode(SECRET, opened.api_token(SECRET))
    assert principal.role is Role.staff and principal.community_id == "anting"
    staff = session_person(SECRET, session_token(SECRET, Person("Wang Fang", "datong")))
    assert not staff.ops  # a session without the claim is never ops


def test_the_api_token_minted_per_call_is_staff_of_the_community_for_a_minute() -> None:
    principal = decode(SECRET, Person("Wang Fang", "datong", "g3").api_token(SECRET))
    assert principal.community_id == "datong" and principal.subject == "console:Wang Fang"
    claims = jwt.decode(
        Person("a", "datong").api_token(SECRET), SECRET, ["HS256"], issuer="doorstep"
    )
    assert claims["exp"] - claims["iat"] == 60


def test_the_board_counts_each_grids_orders_tasks_and_cadres() -> None:
    orders = [
        {"grid_id": "g1", "status": "held"},
        {"grid_id": "g1", "status": "accepted"},
        {"grid_id": "g1", "status": "delivered"},  # done: not open
        {"grid_id": "g2", "status": "failed"},
    ]
    early, late = NOW - timedelta(minutes=42), NOW - timedelta(minutes=5)
    tasks = [
        {"grid_id": "g1", "state": "waiting", "escalated": True, "placed_at": late.isoformat()},
        {"grid_id": "g1", "state": "waiting", "late": True, "placed_at": early.isoformat()},
        {"grid_id": "g1", "state": "picked_up", "placed_at": early.isoformat()},
        {"grid_id": "g2", "state": "offered", "placed_at": early.isoformat()},
    ]
    on_duty = [
        {"volunteer_id": "v1", "name": "Li", "grid_id": "g1", "load": 1, "capacity": 3},
        {"volunteer_id": "v2", "name": "Zhao", "grid_id": "g2", "load": 1, "capacity": 1},
    ]
    g1, g2 = overview(Person("s", "datong"), COMMUNITY, orders, tasks, on_duty, {"v1": early})
    assert (g1.open, g1.held, g1.waiting, g1.assigned, g1.late, g1.escalated) == (2, 1, 2, 1, 1, 1)
    assert g1.oldest_waiting_minutes(NOW) == 42
    assert [(c.name, c.load, c.capacity, c.since) for c in g1.on_duty] == [("Li", 1, 3, early)]
    assert (g2.open, g2.failed, g2.offered, g2.oldest_waiting_minutes(NOW)) == (1, 1, 1, None)
    # A grid worker's board is their grid alone.
    (only,) = overview(Person("w", "datong", "g2"), COMMUNITY, orders, tasks, on_duty, {})
    assert only.grid_id == "g2" and only.open == 1


def test_a_redirect_after_an_action_never_leaves_the_console() -> None:
    from services.console.pages import on_console

    assert on_console("/queues", "/") == "/queues"
    assert [on_console(p, "/") for p in ("//evil.example/x", "https://evil.example", "")] == [
        "/"
    ] * 3
