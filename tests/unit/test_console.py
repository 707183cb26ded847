"""The console's own logic: who is signed in, and the board's figures per grid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from services.console.overview import overview
from services.console.session import Person, SignInRefused, person_of, sign_in_link
from shared.auth import LINK_AUDIENCE, Role, decode, mint, verified_claims
from shared.contracts.orders import CommunityPolicy
from shared.keys import KeyRing, SigningKey
from shared.problem import Problem

KEY = SigningKey.generate()
NOW = datetime(2022, 5, 28, 10, 0, tzinfo=UTC)
COMMUNITY = {
    "grids": [
        {"grid_id": g, "name": f"Grid {g}", "grid_worker": f"W{g}", "neighbours": []}
        for g in ("g1", "g2")
    ]
}


def token_of(link: str) -> str:
    return link.split("?t=", 1)[1]


async def test_a_sign_in_link_names_the_person_and_is_no_access_token() -> None:
    link = sign_in_link(KEY, "http://console", "Wang Fang", "datong", "g3")
    claims = await verified_claims(KeyRing.of(KEY), token_of(link), audience=LINK_AUDIENCE)
    assert claims["identity"]["identity_id"] == "grid_worker:datong:g3"
    assert claims["identity"]["name"] == "Wang Fang" and claims["ops"] is False
    with pytest.raises(Problem):  # no service takes a link for a bearer token
        await decode(KeyRing.of(KEY), token_of(link))
    with pytest.raises(Problem):  # nor one signed by a key identity does not publish
        await decode(KeyRing.of(KEY), mint(SigningKey.generate(), role=Role.ops, subject="x"))
    forged = jwt.encode({"iss": "doorstep", "sub": "x", "role": "ops", "exp": 4102444800}, "s" * 40)
    with pytest.raises(Problem):  # nor one signed with a shared secret
        await decode(KeyRing.of(KEY), forged)


async def test_the_console_is_for_staff_grid_workers_and_ops_as_staff() -> None:
    keys = KeyRing.of(KEY)
    grid = mint(KEY, role=Role.grid_worker, subject="p", community_id="datong", grid_id="g3")
    who = person_of(await decode(keys, grid), grid)
    assert who.role == "grid_worker" and who.sees_grid("g3") and not who.sees_grid("g1")
    assert who.token == grid  # the services are called with the person's own token
    resident = mint(KEY, role=Role.resident, subject="r", community_id="datong", household_id="h")
    with pytest.raises(SignInRefused):
        person_of(await decode(keys, resident), resident)


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


def test_a_priority_typed_as_superscript_or_full_width_digits_is_no_500() -> None:
    from services.console.pages import priority_body

    assert priority_body({"priority": "²"}) == {"priority": -1}  # the service refuses it
    assert priority_body({"priority": "５０"}) == {"priority": 50}  # typed on a Chinese IME
    assert priority_body({"priority": " 80 "}) == {"priority": 80}


def test_a_card_code_of_digits_only_is_looked_up_as_a_card_not_a_phone() -> None:
    from services.console.pages import lookup_of

    # Card codes use the digits 3, 4, 7 and 9 too: "347934" is a card (~4 % of Datong's).
    assert lookup_of("347934") == {"card_code": "347934"}
    assert lookup_of("k7m2ac") == {"card_code": "k7m2ac"}
    assert lookup_of("139 1234-5678") == {"phone": "13912345678"}
    assert lookup_of("+86 13912345678") == {"phone": "+8613912345678"}
    assert lookup_of("１３９１２３４５６７８") == {"phone": "13912345678"}


def test_the_console_speaks_the_browsers_language_and_chinese_when_it_names_neither() -> None:
    from services.console.pages import negotiated

    assert negotiated("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert negotiated("en-US,en;q=0.9,zh-CN;q=0.8") == "en"
    assert negotiated("fr-FR,zh-TW;q=0.7,en;q=0.5") == "zh"  # the first we speak, by weight
    assert negotiated("en;q=0.3,zh;q=0.6") == "zh"
    assert negotiated("") == negotiated("fr") == negotiated("*") == "zh"


def test_times_read_as_the_communitys_own_clock() -> None:
    from services.console.pages import local_time

    beijing = local_time(CommunityPolicy().clock())
    assert beijing("2022-05-28T19:40:00+00:00") == "2022-05-29 03:40"  # a night call
    assert beijing("2022-05-28T19:40:00+00:00", "%H:%M") == "03:40"
    assert beijing(None) == "" and beijing("not a time") == "not a time"
    london = local_time(CommunityPolicy(time_zone="Europe/London").clock())
    assert london("2024-07-01T21:30:00Z", "%H:%M") == "22:30"  # summer time, by the zone's name
