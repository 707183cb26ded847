"""Sign-in for everyone, against the services as real processes: a phone, the code the
SMS gateway received, tokens each role uses where it may (and is refused where not)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.auth import Role, mint
from shared.contracts.identity import phone_account
from shared.keys import SigningKey
from tests.e2e.client import (
    Community,
    auth,
    codes_for,
    eventually,
    grids,
    known,
    new_phone,
    token,
)
from tests.e2e.conftest import Running, front_end, restart
from tests.gateway import GatewayServer


def ask_code(community: Community, gateway: GatewayServer, phone: str) -> str:
    before = len(codes_for(gateway, phone))
    answer = community.http.post(community.url("identity", "/auth/code"), json={"phone": phone})
    assert answer.status_code == 202, answer.text
    return eventually(
        lambda: codes_for(gateway, phone)[before:] and codes_for(gateway, phone)[-1],
        what="the code at the SMS gateway",
    )


def verify(community: Community, phone: str, code: str, **extra: Any) -> httpx.Response:
    return community.http.post(
        community.url("identity", "/auth/verify"), json={"phone": phone, "code": code, **extra}
    )


def sign_in(community: Community, gateway: GatewayServer, phone: str) -> dict[str, Any]:
    answer = verify(community, phone, ask_code(community, gateway, phone))
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def refresh(community: Community, tokens: dict[str, Any], **extra: Any) -> httpx.Response:
    return community.http.post(
        community.url("identity", "/auth/refresh"),
        json={"refresh_token": tokens["refresh_token"], **extra},
    )


def refused_at_a_refresh(community: Community, tokens: dict[str, Any]) -> str:
    """Refresh (keeping each new token, as a client does) until refused; why."""
    current = tokens

    def refused() -> str | None:
        nonlocal current
        answer = refresh(community, current)
        if answer.status_code == 200:
            current = answer.json()
            return None
        assert answer.status_code == 401, answer.text
        return str(answer.json()["detail"])

    return eventually(refused, what="a refresh to be refused")


def test_a_resident_signs_in_with_the_texted_code_and_orders_for_their_own_home(
    community: Community, gateway: GatewayServer
) -> None:
    community.define()
    phone, relative = new_phone(), new_phone()
    rows = "compound,building,unit,room,grid,phone,flags,relative_phones\n"
    rows += f"Datong Garden,2,1,301,g1,{phone},,+86 {relative}\n"
    imported = community.ok(
        "POST",
        "orders",
        f"/v1/communities/{community.community_id}/households/import",
        community.staff,
        content=rows,
        headers={"Content-Type": "text/csv"},
    )
    home = imported["imported"][0]
    other = community.household("g1")
    known(community, phone, "resident")
    tokens = sign_in(community, gateway, phone)
    assert tokens["identity"]["role"] == "resident" and tokens["expires_in"] <= 15 * 60
    mine = tokens["access_token"]
    placed = community.ok(
        "POST", "orders", "/v1/orders", mine, json={"category": "groceries", "items": "rice"}
    )
    assert placed["household_id"] == home["household_id"]
    path = f"/v1/households/{other['household_id']}"
    assert community.call("GET", "orders", path, mine).status_code == 404
    assert community.call("GET", "volunteers", "/v1/volunteers", mine).status_code == 403
    # A relative's number signs in for the household too, until staff take it off.
    theirs = sign_in(community, gateway, relative)
    assert theirs["identity"]["identity_id"] == tokens["identity"]["identity_id"]
    community.ok(
        "PUT",
        "orders",
        f"/v1/households/{home['household_id']}/phones",
        community.staff,
        json={"phone": phone, "relative_phones": []},
    )
    assert "no longer resident" in refused_at_a_refresh(community, theirs)
    assert refresh(community, tokens).status_code == 200  # the household's own phone stays


def test_codes_fail_as_they_should_and_an_unknown_phone_is_answered_the_same(
    community: Community, gateway: GatewayServer
) -> None:
    community.define()
    phone = new_phone()
    community.import_households([f"Datong Garden,3,1,302,g1,{phone},"])
    nobody = new_phone()
    url = community.url("identity", "/auth/code")
    known(community, phone, "resident")
    code = ask_code(community, gateway, phone)
    unknown = community.http.post(url, json={"phone": nobody})
    registered = community.http.post(url, json={"phone": phone})
    assert unknown.status_code == registered.status_code == 202
    assert unknown.json() == registered.json()
    code = eventually(
        lambda: codes_for(gateway, phone)[-1:] != [code] and codes_for(gateway, phone)[-1],
        what="a new code",
    )
    assert codes_for(gateway, nobody) == []  # nothing is texted to a phone nobody knows
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    tries = [verify(community, phone, wrong) for _ in range(5)]
    assert [t.status_code for t in tries] == [401] * 5
    assert verify(community, phone, code).status_code == 401  # the sixth try: ended
    # A few codes per phone an hour, then 429 with when to try again.
    # However it is written it is one phone: +86, 0086, full-width digits.
    wide = phone.translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"})
    forms = [f"+86 {phone}", f"0086-{phone}", wide, phone, phone]
    answers = [community.http.post(url, json={"phone": form}) for form in forms]
    refused = answers[-1]
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert community.http.post(url, json={"phone": "not a phone"}).status_code == 422
    # Every request, sign-in and refusal is in the phone's audit trail (ops read it).
    trail = community.ok(
        "GET",
        "identity",
        "/v1/audit",
        token(Role.ops),
        params={"subject": f"account/{phone_account(phone)}"},
    )["steps"]
    seen = {(s["type"], s["status"]) for s in trail}
    assert ("doorstep.sign_in.request_code.v1", 429) in seen
    assert ("doorstep.sign_in.verify_code.v1", 401) in seen
    assert ("doorstep.sign_in.request_code.v1", 200) in seen


def test_a_refresh_token_works_once_sign_out_ends_sessions_and_a_removed_cadre_is_out(
    community: Community, gateway: GatewayServer
) -> None:
    community.define()
    phone = new_phone()
    vid = community.volunteer("g1", phone=phone, check_in=False)
    known(community, phone, "volunteer")
    first = sign_in(community, gateway, phone)
    assert first["identity"]["identity_id"] == f"volunteer:{community.community_id}:{vid}"
    assert community.call("GET", "dispatch", "/v1/tasks", first["access_token"]).status_code == 200
    second = refresh(community, first)
    assert second.status_code == 200
    assert refresh(community, first).status_code == 401  # used twice: the session ends
    assert refresh(community, second.json()).status_code == 401
    # Sign-out ends this session; sign-out-everywhere all of the phone's.
    a, b = sign_in(community, gateway, phone), sign_in(community, gateway, phone)
    out = community.http.post(
        community.url("identity", "/auth/sign-out"), json={"refresh_token": a["refresh_token"]}
    )
    assert out.status_code == 200 and refresh(community, a).status_code == 401
    everywhere = community.call("POST", "identity", "/v1/sign-out-everywhere", b["access_token"])
    assert everywhere.status_code == 200 and refresh(community, b).status_code == 401
    # A cadre removed by staff: their next refresh is refused.
    c = sign_in(community, gateway, phone)
    community.ok("POST", "volunteers", f"/v1/volunteers/{vid}/remove", community.staff)
    assert "no longer volunteer" in refused_at_a_refresh(community, c)


def test_a_grid_worker_signs_in_and_the_services_keep_them_to_their_grid(
    community: Community, gateway: GatewayServer
) -> None:
    phone = new_phone()
    defined = grids()
    defined[2]["grid_worker_phone"] = phone  # g3's grid worker
    body = {"community_id": community.community_id, "name": "C", "grids": defined, "policy": {}}
    community.ok("POST", "orders", "/v1/communities", token(Role.ops), json=body)
    mine, theirs = community.household("g3"), community.household("g1")
    staff_order = {"category": "groceries", "items": "rice"}
    elsewhere = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        community.staff,
        json={**staff_order, "household_id": theirs["household_id"]},
    )
    known(community, phone, "grid_worker")
    tokens = sign_in(community, gateway, phone)
    grid = tokens["access_token"]
    assert tokens["identity"]["role"] == "grid_worker"
    placed = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        grid,
        json={**staff_order, "household_id": mine["household_id"]},
    )
    listed = community.ok("GET", "orders", "/v1/orders", grid)["orders"]
    assert {o["grid_id"] for o in listed} == {"g3"} and placed["order_id"] in {
        o["order_id"] for o in listed
    }
    outside = f"/v1/orders/{elsewhere['order_id']}"
    assert community.call("GET", "orders", outside, grid).status_code == 404
    refused = community.call(
        "POST",
        "orders",
        "/v1/orders",
        grid,
        json={**staff_order, "household_id": theirs["household_id"]},
    )
    assert refused.status_code == 404
    report = f"/v1/communities/{community.community_id}/report"
    assert community.call("GET", "orders", report, grid).status_code == 403  # staff's
    assert community.call("GET", "dispatch", "/v1/tasks", grid).status_code == 200


def test_no_service_takes_a_token_signed_with_a_shared_secret(community: Community) -> None:
    import jwt

    forged = jwt.encode(
        {"iss": "doorstep", "sub": "x", "role": "ops", "iat": 0, "exp": 4102444800}, "s" * 40
    )
    for service in ("orders", "volunteers", "dispatch", "notify", "identity"):
        path = {"identity": "/v1/me", "notify": "/v1/inbox"}.get(service, "/v1/commands/x")
        assert community.call("GET", service, path, forged).status_code == 401, service
    assert community.http.get(community.url("identity", "/.well-known/jwks.json")).json()["keys"]


def test_identity_killed_mid_sign_in_loses_nothing_and_doubles_nothing(
    services: Running, community: Community, gateway: GatewayServer
) -> None:
    community.define()
    phone = new_phone()
    community.import_households([f"Datong Garden,4,1,303,g2,{phone},"])
    known(community, phone, "resident")
    code = ask_code(community, gateway, phone)
    services.procs["identity"].send_signal(signal.SIGKILL)
    services.procs["identity"].wait()
    restart(services, "identity")
    signed = verify(community, phone, code)
    assert signed.status_code == 200, signed.text
    assert verify(community, phone, code).status_code == 401  # still once
    assert refresh(community, signed.json()).status_code == 200
    assert auth(signed.json()["access_token"])


def test_keys_rotate_without_downtime_old_and_new_accepted_until_the_old_retires(
    services: Running, community: Community, gateway: GatewayServer, tmp_path: Path
) -> None:
    import jwt

    from tests.e2e.conftest import KEY_FILE, SIGNING_KEY

    community.define()
    phone = new_phone()
    community.import_households([f"Datong Garden,5,1,304,g3,{phone},"])
    known(community, phone, "resident")
    new = SigningKey.generate()
    new_file = tmp_path / "new.pem"
    new.save(new_file)
    old_token = community.staff  # signed with the key every service knows
    new_token = mint(new, role=Role.staff, subject="s", community_id=community.community_id)

    def accepted(tok: str) -> bool:  # a route staff and residents alike may read
        return community.call("GET", "orders", "/v1/orders", tok).status_code == 200

    def identity_with(*files: Path) -> None:
        services.envs["identity"]["DOORSTEP_SIGNING_KEYS"] = ",".join(map(str, files))
        services.procs["identity"].terminate()
        services.procs["identity"].wait(timeout=30)
        restart(services, "identity")

    assert not accepted(new_token)  # not published yet: nobody takes it
    try:
        identity_with(KEY_FILE, new_file)  # 1. the new key published, not signing
        eventually(lambda: accepted(new_token), what="the services to learn the new key")
        assert accepted(old_token)
        identity_with(new_file, KEY_FILE)  # 2. the new key signs; the old still checks
        signed = sign_in(community, gateway, phone)["access_token"]
        assert jwt.get_unverified_header(signed)["kid"] == new.kid
        assert accepted(signed) and accepted(old_token)
        identity_with(new_file)  # 3. the old key retires: its tokens stop working
        eventually(lambda: not accepted(old_token), what="the old key to be dropped")
        assert accepted(signed)
    finally:
        identity_with(KEY_FILE)  # the key the other tests mint with, known everywhere again
        for service, url in services.urls.items():
            eventually(
                lambda url=url: (
                    community.http.get(f"{url}/v1/nothing", headers=auth(old_token)).status_code
                    == 404
                ),
                what=f"{service} to know the key again",
            )
    assert SIGNING_KEY.kid != new.kid


def test_the_first_ops_account_is_made_from_the_command_line_and_names_staff(
    services: Running, community: Community, gateway: GatewayServer
) -> None:
    import subprocess
    import sys

    from tests.e2e.conftest import REPO

    community.define()
    phone = new_phone()
    made = subprocess.run(
        [sys.executable, "-m", "doorstep_cli", "ops-account", "--phone", phone, "--name", "李运维"],
        env={**services.envs["identity"]},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    known(community, phone, "ops")
    ops = sign_in(community, gateway, phone)
    assert ops["identity"]["role"] == "ops"
    listed = community.call(
        "GET", "orders", f"/v1/orders?community_id={community.community_id}", ops["access_token"]
    )
    assert listed.status_code == 200
    order = {"category": "groceries", "items": "rice", "household_id": "hh_x"}
    refused = community.call("POST", "orders", "/v1/orders", ops["access_token"], json=order)
    assert refused.status_code == 403  # ops do not order; staff do
    # Ops name a staff member, who then signs in as staff of that community.
    staff_phone = new_phone()
    named = f"/v1/communities/{community.community_id}/staff/{staff_phone}"
    community.ok("PUT", "identity", named, ops["access_token"], json={"name": "王芳"})
    known(community, staff_phone, "staff")
    staff = sign_in(community, gateway, staff_phone)
    assert staff["identity"]["identity_id"] == f"staff:{community.community_id}"
    assert (
        community.call(
            "GET", "orders", f"/v1/communities/{community.community_id}", staff["access_token"]
        ).status_code
        == 200
    )
    # Ops (only) name a sub-district's officer, who signs in to its view and no community's.
    officer_phone = new_phone()
    named = f"/v1/sub-districts/南关街道/officers/{officer_phone}"
    refused = community.call("PUT", "identity", named, staff["access_token"], json={"name": "李"})
    assert refused.status_code == 403
    community.ok("PUT", "identity", named, ops["access_token"], json={"name": "李主任"})
    known(community, officer_phone, "sub_district")
    officer = sign_in(community, gateway, officer_phone)
    assert officer["identity"]["identity_id"] == "sub_district:南关街道"
    seen = community.ok("GET", "district", "/v1/overview", officer["access_token"])
    assert seen["sub_district"] == "南关街道"
    assert (
        community.call(
            "GET", "orders", f"/v1/communities/{community.community_id}", officer["access_token"]
        ).status_code
        == 403
    )


def test_a_code_asked_through_a_front_end_counts_against_the_persons_address(
    community: Community, field: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Identity allows so many codes per source address an hour. Through the phone app or
    the console every request reaches it from the front end, so that limit (30) would be
    the whole community's in a morning: the front ends pass on the address of the person
    in front of them, and identity takes it from them (and only from trusted hosts)."""
    from pymongo import MongoClient

    env = community.env
    with (
        front_end("console", env, tmp_path_factory) as console,
        MongoClient(env.stack.mongo_url) as client,
    ):
        asked = client[env.databases["identity"]]["code_requests"]
        through_app = community.http.post(
            f"{field}/session/code",
            json={"phone": new_phone()},
            headers={"X-Doorstep-App": "1", "X-Forwarded-For": "10.20.0.7"},
        )
        assert through_app.status_code == 200, through_app.text
        through_console = community.http.post(
            f"{console}/signin/code",
            data={"phone": new_phone()},
            headers={"X-Forwarded-For": "10.20.0.8"},
        )
        assert through_console.status_code == 200, through_console.text
        assert asked.count_documents({"ip": "10.20.0.7"}) == 1
        assert asked.count_documents({"ip": "10.20.0.8"}) == 1
