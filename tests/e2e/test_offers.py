"""Scenarios 2 and 3: offers move on (decline, timeout) and out (neighbour grid,
escalation to the grid worker, a new check-in)."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.client import Community, eventually
from tests.e2e.conftest import OFFER_TIMEOUT


def place(community: Community, grid: str, category: str = "groceries") -> str:
    home = community.household(grid)
    resident = community.resident(home["household_id"])
    order = community.ok(
        "POST", "orders", "/v1/orders", resident, json={"category": category, "items": "rice, eggs"}
    )
    return order["order_id"]  # type: ignore[no-any-return]


def test_declined_then_lapsed_then_accepted_in_that_order(community: Community) -> None:
    community.define()
    first = community.volunteer("g3")
    second = community.volunteer("g3")
    third = community.volunteer("g3")  # checked in last: idle the shortest

    order_id = place(community, "g3")
    community.offer_for(first, order_id)
    assert community.act(first, order_id, "decline").status_code == 200

    offered_at = time.monotonic()
    community.offer_for(second, order_id)  # ...and the second says nothing
    community.offer_for(third, order_id, timeout=OFFER_TIMEOUT + 20)
    assert time.monotonic() - offered_at >= OFFER_TIMEOUT * 0.9
    # The lapsed offer is gone: the second volunteer can no longer accept it.
    assert community.act(second, order_id, "accept").status_code == 404
    assert community.act(third, order_id, "accept").json()["state"] == "assigned"
    community.order_status(order_id, "assigned")

    expected = [
        ("offer.made", first),
        ("offer.declined", first),
        ("offer.made", second),
        ("offer.expired", second),
        ("offer.made", third),
        ("task.assigned", third),
    ]

    def offers() -> list[tuple[str, dict[str, Any]]]:
        # An escalation may come first: the order can reach dispatch before the check-ins
        # do (two topics, no order between them), and nobody is on duty for a moment.
        return [e for e in community.dispatch_events(order_id) if e[0] != "order.escalated"]

    events = eventually(
        lambda: (e := offers()) and len(e) >= len(expected) and e, what="six dispatch events"
    )
    assert [(kind, payload["volunteer_id"]) for kind, payload in events] == expected
    assert [p["attempt"] for k, p in events if k == "offer.made"] == [1, 2, 3]


def test_neighbour_grid_then_a_wait_for_the_busy_cadre_then_a_new_check_in(
    community: Community,
) -> None:
    community.define()
    neighbour = community.volunteer("g4", capacity=1)  # nobody on duty in g3

    first = place(community, "g3")
    offer = community.offer_for(neighbour, first)
    assert offer["grid_id"] == "g3"
    community.act(neighbour, first, "accept")

    # The only volunteer is now full. Busy is not absent: the order waits for a cadre to
    # be free (the late timer tells the grid worker if that takes too long); nobody is
    # told "no suitable volunteer on duty" while one is, only busy.
    second = place(community, "g3")
    eventually(
        lambda: any(
            t["order_id"] == second and t["state"] == "waiting"
            for t in community.ok("GET", "dispatch", "/v1/tasks", community.staff)["tasks"]
        ),
        what="the second order waiting on the board",
    )
    time.sleep(1)
    assert not community.order(community.staff, second)["escalated"]
    assert community.dispatch_events(second) == []

    newcomer = community.volunteer("g3")
    community.offer_for(newcomer, second)
    assert community.act(newcomer, second, "accept").status_code == 200
    assert not community.order_status(second, "assigned")["escalated"]
