"""Scenario 6: every role against every endpoint, including another household's order and
another community's data, gets 401, 403 or 404 — never data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt

from shared.auth import Role
from shared.keys import SigningKey
from tests.e2e.client import (
    HOUSEHOLD_BODY,
    VOLUNTEER_BODY,
    Community,
    auth,
    eventually,
    grids,
    token,
)
from tests.e2e.conftest import SIGNING_KEY

ENDPOINTS = [
    ("POST", "orders", "/v1/communities"),
    ("GET", "orders", "/v1/communities/{c}"),
    ("POST", "orders", "/v1/communities/{c}/households"),
    ("POST", "orders", "/v1/communities/{c}/households/import"),
    ("GET", "orders", "/v1/communities/{c}/households"),
    ("GET", "orders", "/v1/households/{h}"),
    ("POST", "orders", "/v1/orders"),
    ("GET", "orders", "/v1/orders"),
    ("GET", "orders", "/v1/orders/{o}"),
    ("POST", "orders", "/v1/orders/{o}/cancel"),
    ("POST", "orders", "/v1/orders/{o}/reopen"),
    ("POST", "orders", "/v1/orders/{o}/accept"),
    ("PUT", "orders", "/v1/orders/{o}/priority"),
    ("POST", "volunteers", "/v1/volunteers"),
    ("GET", "volunteers", "/v1/volunteers"),
    ("GET", "volunteers", "/v1/volunteers/{v}"),
    ("POST", "volunteers", "/v1/volunteers/{v}/approve"),
    ("POST", "volunteers", "/v1/volunteers/{v}/check-in"),
    ("POST", "volunteers", "/v1/volunteers/{v}/check-out"),
    ("GET", "dispatch", "/v1/tasks"),
    ("POST", "dispatch", "/v1/tasks/{o}/accept"),
    ("POST", "dispatch", "/v1/tasks/{o}/decline"),
    ("POST", "dispatch", "/v1/tasks/{o}/pick-up"),
    ("POST", "dispatch", "/v1/tasks/{o}/deliver"),
    ("POST", "dispatch", "/v1/tasks/{o}/fail"),
    ("GET", "notify", "/v1/inbox"),
    ("GET", "notify", "/v1/inbox/unread-count"),
    ("POST", "notify", "/v1/inbox/{n}/read"),
    ("GET", "notify", "/v1/inbox/stream"),
    ("GET", "notify", "/v1/call-list"),
    ("POST", "notify", "/v1/call-list/{n}/done"),
    ("GET", "notify", "/v1/notifications/{n}/delivery"),
]


def valid_body(template: str, ids: dict[str, str]) -> dict[str, object] | None:
    """A body that passes validation, so the request reaches the scope check."""
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    return {
        "/v1/communities": {"community_id": ids["c"], "name": "Taken over", "grids": grids()},
        "/v1/communities/{c}/households": HOUSEHOLD_BODY,
        "/v1/orders": {"household_id": ids["h"], "category": "groceries", "items": "rice"},
        "/v1/orders/{o}/priority": {"priority": 99},
        "/v1/volunteers": VOLUNTEER_BODY,
        "/v1/volunteers/{v}/check-in": {"grid_id": "g1", "until": until},
        "/v1/tasks/{o}/deliver": {"handoff_code": "1234"},
        "/v1/tasks/{o}/fail": {"reason": "not_home"},
    }.get(template)


def test_no_role_gets_what_is_not_theirs(community: Community) -> None:
    c = community.community_id
    community.define()
    own = community.household("g3", flags="no_smartphone")
    other = community.household("g3")
    volunteer = community.volunteer("g3")
    owner = community.resident(own["household_id"])
    order = community.ok(
        "POST", "orders", "/v1/orders", owner, json={"category": "groceries", "items": "rice"}
    )
    o = order["order_id"]
    community.offer_for(volunteer, o)
    note = eventually(lambda: community.inbox(owner)["items"], what="a notification")[0]["id"]
    ids = {"c": c, "h": own["household_id"], "o": o, "v": volunteer, "n": note}

    elsewhere = f"{c}x"
    tokens = {
        "no token": None,
        "garbage": "not-a-jwt",
        "wrong secret": jwt.encode(
            {"iss": "doorstep", "sub": "x", "role": "ops", "exp": 4102444800},
            "another-secret-another-secret-another",
            algorithm="HS256",
        ),
        "expired": SIGNING_KEY.sign(
            {"iss": "doorstep", "sub": "x", "role": "ops", "iat": 0, "exp": 1}
        ),
        "another key": SigningKey.generate().sign(
            {"iss": "doorstep", "sub": "x", "role": "ops", "iat": 0, "exp": 4102444800}
        ),
        "other household": community.resident(other["household_id"]),
        "other volunteer": community.volunteer_token("vol_someone_else"),
        "other community's staff": token(Role.staff, elsewhere),
        "other community's resident": token(Role.resident, elsewhere, household_id="hh_x"),
        "other community's volunteer": token(Role.volunteer, elsewhere, volunteer_id="vol_y"),
    }
    # What each of them may legitimately see of its own (empty lists of its own scope).
    own_scope_reads = {
        ("GET", "/v1/orders"),
        ("GET", "/v1/inbox"),
        ("GET", "/v1/inbox/unread-count"),
        ("GET", "/v1/tasks"),
        ("GET", "/v1/call-list"),
        ("GET", "/v1/volunteers"),
        ("GET", "/v1/inbox/stream"),
    }
    leaks = []
    for who, tok in tokens.items():
        headers = auth(tok) if tok else {}
        for method, service, template in ENDPOINTS:
            path = template.format(**ids)
            if (
                (method, template) in own_scope_reads
                and tok
                and who not in ("garbage", "wrong secret", "expired", "another key")
            ):
                if template == "/v1/inbox/stream":
                    continue
                response = community.http.request(
                    method, community.url(service, path), headers=headers
                )
                body = response.text
                if response.status_code == 200 and (
                    o in body or own["household_id"] in body or volunteer in body
                ):
                    leaks.append((who, method, path, response.status_code))
                continue
            if (who, method, template) == ("other volunteer", "POST", "/v1/volunteers"):
                continue  # registering oneself is theirs to do
            body = valid_body(template, ids)
            kwargs: dict[str, object] = {"json": body} if body is not None else {}
            if template.endswith("/import"):
                kwargs = {
                    "content": "compound,building,unit,room,grid,phone\nA,1,1,9,g1,13900000000\n"
                }
            response = community.http.request(
                method, community.url(service, path), headers=headers, **kwargs
            )
            unauthenticated = tok is None or who in (
                "garbage",
                "wrong secret",
                "expired",
                "another key",
            )
            if response.status_code not in (401, 403, 404):
                leaks.append((who, method, path, response.status_code))
            elif response.headers.get("content-type") != "application/problem+json":
                leaks.append((who, method, path, "not problem+json"))
            elif unauthenticated and response.status_code != 401:
                leaks.append((who, method, path, response.status_code))
    assert leaks == []

    # The matrix is not failing for the wrong reason: the owners themselves get through.
    assert community.order(owner, o)["order_id"] == o
    assert community.ok("GET", "orders", f"/v1/households/{own['household_id']}", owner)
    assert community.tasks(volunteer)[0]["order_id"] == o


def test_wrong_scope_on_reads_of_named_things_is_404_not_403(community: Community) -> None:
    community.define()
    home = community.household("g1")
    owner = community.resident(home["household_id"])
    order = community.ok(
        "POST", "orders", "/v1/orders", owner, json={"category": "garbage", "items": "2 bags"}
    )
    stranger = community.resident(community.household("g1")["household_id"])
    for path in (f"/v1/orders/{order['order_id']}", f"/v1/households/{home['household_id']}"):
        response = community.call("GET", "orders", path, stranger)
        assert response.status_code == 404  # its existence is private
        assert "handoff_code" not in response.text


def test_a_wrong_role_is_refused_403_whatever_the_body_holds(community: Community) -> None:
    community.define()
    resident = community.resident(community.household("g1")["household_id"])
    staff = community.staff
    tries = [
        ("orders", "/v1/communities", staff, {"grids": "not a list"}),
        ("orders", "/v1/orders/o-1/priority", resident, {"priority": "high"}),
        ("volunteers", "/v1/volunteers", resident, {"capacity": -1}),
        ("dispatch", "/v1/tasks/o-1/deliver", staff, {"handoff_code": "not a code"}),
    ]
    for service, path, who, body in tries:
        method = "PUT" if path.endswith("/priority") else "POST"
        response = community.call(method, service, path, who, json=body)
        assert response.status_code == 403, (path, response.status_code, response.text)
