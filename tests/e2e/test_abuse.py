"""Abuse at the edge, as an attacker or a broken client would try it: oversized and
unauthenticated bodies, a huge import, guessing handoff codes, reading streams that are not
yours. Each gets its status, writes nothing, and leaves the service's memory and /readyz as
they were."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from shared.auth import Role
from tests.e2e.client import Community, auth, eventually, token
from tests.e2e.conftest import Running

MB = 1024 * 1024


def rss_mb(running: Running, name: str) -> float:
    status = Path(f"/proc/{running.procs[name].pid}/status").read_text()
    kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(kb) / 1024


@pytest.fixture()
def unharmed(services: Running) -> Iterator[None]:
    """After the test: every service still ready, and none grew by the bodies it refused."""
    before = {name: rss_mb(services, name) for name in services.procs}
    yield
    with httpx.Client(timeout=5) as client:
        for name, url in services.urls.items():
            assert client.get(f"{url}/readyz").status_code == 200, name
    grown = {name: rss_mb(services, name) - before[name] for name in services.procs}
    assert max(grown.values()) < 60, grown


def raw_request(url: str, head: str, body_prefix: bytes = b"") -> tuple[int, dict[str, str]]:
    """Headers that announce a body, and only its first bytes: the answer must come
    without the server waiting for (or reading) the rest."""
    where = urlparse(url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body_prefix)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    lines = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}


def announce(path: str, length: int, authorization: str | None = None) -> str:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: localhost",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.usefixtures("unharmed")
def test_a_100_mb_body_without_valid_credentials_is_refused_401_before_it_is_read(
    community: Community,
) -> None:
    url = community.env.urls["orders"]
    for credentials in (None, "Bearer not-a-token", "Basic dXNlcjpwYXNz"):
        status, headers = raw_request(
            url, announce("/v1/orders", 100 * MB, credentials), b'{"category": "'
        )
        assert status == 401
        assert headers["content-type"] == "application/problem+json"
        assert headers["www-authenticate"].startswith("Bearer")


@pytest.mark.usefixtures("unharmed")
def test_a_body_over_the_routes_limit_is_refused_413_announced_or_streamed(
    community: Community,
) -> None:
    community.define()
    home = community.household("g1")
    resident = f"Bearer {community.resident(home['household_id'])}"
    status, _ = raw_request(
        community.env.urls["orders"], announce("/v1/orders", 50 * MB, resident), b"{"
    )
    assert status == 413
    # Streamed without a length (chunked): stopped once past the limit.
    chunks = (b'{"category": "groceries", "items": "' + b"x" * 1000 for _ in range(200))
    streamed = community.http.post(
        community.url("orders", "/v1/orders"),
        content=chunks,
        headers={**auth(community.resident(home["household_id"])), "Idempotency-Key": "big"},
    )
    assert streamed.status_code == 413, streamed.text
    assert streamed.headers["content-type"] == "application/problem+json"
    orders = community.ok("GET", "orders", "/v1/orders", community.staff)["orders"]
    assert orders == []  # nothing written


@pytest.mark.usefixtures("unharmed")
def test_a_huge_import_is_refused_whole_and_a_large_one_is_imported_in_full(
    community: Community,
) -> None:
    community.define()
    staff = community.staff
    path = f"/v1/communities/{community.community_id}/households/import"
    header = "compound,building,unit,room,grid,phone,flags\n"
    over = header + "A,1,1,1,g1,13900000000,\n" * 120_000  # ~3 MB
    too_big = community.call("POST", "orders", path, staff, content=over)
    assert too_big.status_code == 413, too_big.text
    wide = header + f'"{"x" * 200_000}",1,1,1,g1,,\n'
    refused = community.call("POST", "orders", path, staff, content=wide)
    assert refused.status_code == 422 and "field larger" in refused.json()["detail"]
    found = community.ok(
        "GET", "orders", f"/v1/communities/{community.community_id}/households", staff
    )
    assert found["households"] == []  # nothing half-imported

    rows = [f"B{i // 400},{i // 20 % 20},{i % 20},101,g{i % 7 + 1},," for i in range(8_000)]
    imported = community.call(
        "POST", "orders", path, staff, content=header + "\n".join(rows) + "\n", timeout=300
    )
    assert imported.status_code == 201, imported.text[:500]
    assert imported.json()["imported_count"] == 8_000


def test_guessing_a_handoff_code_locks_the_delivery_and_tells_the_grid_worker(
    community: Community,
) -> None:
    community.define()
    home = community.household("g3")
    volunteer = community.volunteer("g3")
    order = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        community.resident(home["household_id"]),
        json={"category": "groceries", "items": "rice"},
    )
    oid = order["order_id"]
    community.offer_for(volunteer, oid)
    community.act(volunteer, oid, "accept")
    community.act(volunteer, oid, "pick-up")
    wrong = f"{(int(order['handoff_code']) + 1) % 10_000:04d}"
    answers = [community.act(volunteer, oid, "deliver", handoff_code=wrong) for _ in range(6)]
    assert [a.status_code for a in answers] == [422, 422, 422, 422, 423, 423]
    right = community.act(volunteer, oid, "deliver", handoff_code=order["handoff_code"])
    assert right.status_code == 423 and "grid worker" in right.json()["detail"]
    photo = community.act(volunteer, oid, "deliver", photo_url="https://p.example/door.jpg")
    assert photo.status_code == 423
    eventually(
        lambda: any(
            "wrong handoff codes" in n["body"]
            for n in community.inbox(community.staff)["items"]
            if n["order_id"] == oid
        ),
        what="the grid worker told of the locked delivery",
    )
    assert community.order(community.staff, oid)["status"] == "picked_up"  # not delivered


def test_a_live_stream_that_is_not_yours_is_refused_403_before_it_starts(
    community: Community,
) -> None:
    community.define()
    mine = community.household("g1")
    theirs = community.household("g2")
    resident = community.resident(mine["household_id"])
    other = community.call(
        "GET",
        "notify",
        "/v1/inbox/stream",
        resident,
        params={"recipient": f"household:{theirs['household_id']}"},
    )
    assert other.status_code == 403, other.text
    assert other.headers["content-type"] == "application/problem+json"
    as_ops = community.call("GET", "notify", "/v1/inbox/stream", token(Role.ops))
    assert as_ops.status_code == 403, as_ops.text
