"""At night a close-contact transfer, or an urgent order, wakes the on-call person: texts
repeat (every second here) until someone takes it, then stop; nobody answering wakes the
next person on the list. Through the real services and a local SMS gateway."""

from __future__ import annotations

import random
import time

from tests.e2e.client import Community, eventually
from tests.e2e.test_keypad import reply, text
from tests.gateway import GatewayServer


def pages_to(gateway: GatewayServer, order_id: str) -> list[str]:
    return [
        body["recipient"]
        for _, body in list(gateway.received)
        if body.get("kind") == "alarm" and body.get("order_id") == order_id
    ]


def place(community: Community, household_id: str, items: str, **body: object) -> str:
    """Staff place an order for a household (on the phone with them)."""
    placed = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        community.staff,
        json={"household_id": household_id, "items": items, **body},
    )
    return str(placed["order_id"])


def test_an_urgent_order_at_night_wakes_the_on_call_list_until_someone_takes_it(
    community: Community, gateway: GatewayServer
) -> None:
    first, second = (f"136{random.randrange(10**8):08d}" for _ in range(2))
    on_call = [{"name": "Li Wei", "phone": first}, {"name": "Zhang Min", "phone": second}]
    # Night all day long here, so the test does not depend on the hour it runs.
    community.define(on_call=on_call, night_from_hour=0, night_until_hour=24)
    home = community.household("g4")
    staff = community.staff

    def order(**body: object) -> str:
        return place(community, home["household_id"], "to the isolation hotel", **body)

    transfer = order(category="transfer")
    # Two texts to the first person, then the second is woken.
    eventually(
        lambda: pages_to(gateway, transfer)[:3] == [f"phone:{first}"] * 2 + [f"phone:{second}"],
        timeout=30,
        what="the first person paged twice, then the next",
    )
    assert "Reply 0" in next(
        b["body"]
        for _, b in gateway.received
        if b.get("order_id") == transfer and b.get("kind") == "alarm"
    )
    assert "it is yours" in reply(text(community, second, "0"))
    settled = len(pages_to(gateway, transfer))
    time.sleep(3)
    assert len(pages_to(gateway, transfer)) == settled  # taken: the texts stop

    quiet = order(category="groceries")  # not urgent: nobody is woken
    urgent = order(category="medicine", priority=95)
    eventually(lambda: pages_to(gateway, urgent), what="the urgent order paging")
    alarms = community.ok("GET", "notify", "/v1/alarms", staff)["alarms"]
    (alarm,) = [a for a in alarms if a["order_id"] == urgent]
    community.ok("POST", "notify", f"/v1/alarms/{alarm['alarm_id']}/ack", staff)  # the console
    settled = len(pages_to(gateway, urgent))
    time.sleep(3)
    assert len(pages_to(gateway, urgent)) == settled
    assert pages_to(gateway, quiet) == []
    assert community.ok("GET", "notify", "/v1/alarms", staff)["alarms"] == []


def test_an_alarm_stops_when_its_order_is_taken_or_cancelled_and_a_held_one_wakes_too(
    community: Community, gateway: GatewayServer
) -> None:
    first, second = (f"135{random.randrange(10**8):08d}" for _ in range(2))
    on_call = [{"name": "Li Wei", "phone": first}, {"name": "Zhang Min", "phone": second}]
    community.define(
        on_call=on_call, night_from_hour=0, night_until_hour=24, auto_accept_orders=False
    )
    home = community.household("g5")
    staff = community.staff

    def order(**body: object) -> str:
        return place(community, home["household_id"], "to hospital", **body)

    # Held for review at night (nothing is accepted by itself here): still someone is woken.
    held = order(category="transfer")
    eventually(lambda: pages_to(gateway, held), what="a held night transfer paging")
    # Staff cancel it: the texts stop, and the alarm is no longer open.
    community.ok(
        "POST", "orders", f"/v1/orders/{held}/cancel", staff, json={"reason": "家属自行送医"}
    )
    eventually(
        lambda: all(
            a["order_id"] != held
            for a in community.ok("GET", "notify", "/v1/alarms", staff)["alarms"]
        ),
        what="the cancelled order's alarm closed",
    )
    settled = len(pages_to(gateway, held))
    time.sleep(3)
    assert len(pages_to(gateway, held)) == settled

    # The first person takes an alarm; the second, answering too, hears it is taken.
    urgent = order(category="medicine", priority=95)
    eventually(lambda: pages_to(gateway, urgent), what="the urgent order paging")
    eventually(
        lambda: f"phone:{second}" in pages_to(gateway, urgent), what="the second person paged"
    )
    assert "it is yours" in reply(text(community, first, "0"))
    taken = reply(text(community, second, "0"))
    assert "Li Wei" in taken and "not registered" not in taken
