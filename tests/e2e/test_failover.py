"""Two dispatch instances share the work; one is killed mid-stream. Its partitions move to
the other, whose boards and offer timers are reloaded from the database: every order is
still delivered, none is assigned twice, nobody goes above capacity."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest

from doorstep_cli.localstack import free_port
from services.dispatch.handlers import partition_of
from tests.e2e.client import Community, auth, eventually
from tests.e2e.conftest import REPO, Running, service_env

PARTITIONS = 4  # as DOORSTEP_TOPIC_PARTITIONS in the e2e services
ORDERS_EACH, CAPACITY = 8, 2


def communities_on_every_partition() -> list[str]:
    found: dict[int, str] = {}
    while len(found) < PARTITIONS:
        candidate = f"f{uuid.uuid4().hex[:8]}"
        found.setdefault(partition_of(candidate, PARTITIONS), candidate)
    return [found[p] for p in sorted(found)]


def simulate(community: Community, vid: str, done: threading.Event, codes: dict[str, str]) -> None:
    with httpx.Client(timeout=30, headers=auth(community.volunteer_token(vid))) as http:
        base = community.url("dispatch", "/v1/tasks")
        while not done.is_set():
            try:
                for task in http.get(base).json()["tasks"]:
                    oid, state = task["order_id"], task["state"]
                    if state == "offered":
                        http.post(f"{base}/{oid}/accept")
                    elif state == "assigned":
                        http.post(f"{base}/{oid}/pick-up")
                    elif state == "picked_up":
                        http.post(f"{base}/{oid}/deliver", json={"handoff_code": codes[oid]})
            except (httpx.HTTPError, KeyError, ValueError):
                pass  # a request during the failover: try again
            time.sleep(0.3)


@pytest.mark.timeout(600)
def test_killing_a_dispatch_instance_loses_and_doubles_nothing(
    services: Running, tmp_path: Path
) -> None:
    env = service_env(
        services.stack,
        "second",
        DOORSTEP_PORT=str(free_port()),
        DOORSTEP_MONGO_DATABASE=services.databases["dispatch"],
    )
    with open(tmp_path / "dispatch-2.log", "wb") as log:
        second = subprocess.Popen(
            [sys.executable, "-m", "services.dispatch"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    # It joins the group, and the partitions are split between the two instances.
    eventually(
        lambda: re.search(
            r"dispatch.assigned.*partitions=\[\d", (tmp_path / "dispatch-2.log").read_text()
        ),
        timeout=60,
        what="the second instance to own partitions",
    )
    http = httpx.Client(timeout=30)
    communities = [Community(services, http, c) for c in communities_on_every_partition()]
    done = threading.Event()
    codes: dict[str, str] = {}
    workers = []
    orders: dict[str, list[str]] = {}
    try:
        for community in communities:
            community.define()
            homes = community.import_households(
                [f"F,1,{i},{i},g{i % 7 + 1},1390000{i:04d}," for i in range(ORDERS_EACH)]
            )["imported"]
            vids = [community.volunteer(f"g{i + 2}", capacity=CAPACITY) for i in range(3)]
            # The volunteers answer from the start, as their phones would.
            for vid in vids:
                worker = threading.Thread(
                    target=simulate, args=(community, vid, done, codes), daemon=True
                )
                worker.start()
                workers.append(worker)
            orders[community.community_id] = []
            for home in homes:
                order = community.ok(
                    "POST",
                    "orders",
                    "/v1/orders",
                    community.staff,
                    json={
                        "household_id": home["household_id"],
                        "category": "groceries",
                        "items": "rice",
                    },
                )
                codes[order["order_id"]] = order["handoff_code"]
                orders[community.community_id].append(order["order_id"])

        def delivered() -> int:
            return sum(
                len(
                    c.ok("GET", "orders", "/v1/orders", c.staff, params={"status": "delivered"})[
                        "orders"
                    ]
                )
                for c in communities
            )

        eventually(lambda: delivered() >= len(codes) // 3, timeout=120, what="a third delivered")
        os.kill(
            second.pid, signal.SIGKILL
        )  # no goodbye: its partitions move after the session times out
        eventually(lambda: delivered() == len(codes), timeout=300, what="every order delivered")
    finally:
        done.set()
        for worker in workers:
            worker.join(timeout=10)
        if second.poll() is None:
            second.kill()
        http.close()

    for community in communities:
        # By event id: a re-publish after the crash carries the same id, and is dropped.
        unique = {p["event_id"]: (kind, p) for kind, p in community.dispatch_events()}
        events = [
            (kind, p.get("order", {}).get("order_id"), p.get("volunteer_id"), p.get("attempt"))
            for kind, p in unique.values()
        ]
        assigned = Counter(order_id for kind, order_id, _, _ in events if kind == "task.assigned")
        assert set(assigned) == set(orders[community.community_id])
        assert max(assigned.values()) == 1
        live: dict[str, set[str]] = defaultdict(set)
        for kind, order_id, vid, _ in events:
            if kind == "offer.made":
                live[vid].add(order_id)
                assert len(live[vid]) <= CAPACITY
            elif kind in ("offer.declined", "offer.expired", "offer.withdrawn", "task.delivered"):
                live[vid].discard(order_id)
