"""Replies by phone keypad, through real HTTP calls to notify's signed inbound webhook: a
cadre accepts and declines offers by digit and marks a delivery with the code; a resident
confirms a delivery or asks to be called; a bad signature, a stale one and a replay are
refused and change nothing; an unknown number gets help."""

from __future__ import annotations

import json
import random
import time

import httpx

from services.notify.keypad import signature
from tests.e2e.client import Community, eventually
from tests.e2e.conftest import SMS_SECRET


def text(
    community: Community,
    sender: str,
    body: str,
    *,
    secret: str = SMS_SECRET,
    at: float | None = None,
    message_id: str | None = None,
) -> httpx.Response:
    """What the gateway does when a text arrives: sign it and post it."""
    sms = {"from": sender, "text": body} | ({"id": message_id} if message_id else {})
    raw = json.dumps(sms).encode()
    stamp = str(int(at if at is not None else time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Doorstep-Timestamp": stamp,
        "X-Doorstep-Signature": signature(secret, stamp, raw),
    }
    return community.http.post(community.url("notify", "/hooks/sms"), content=raw, headers=headers)


def reply(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["reply"])


def order(community: Community, household_id: str, items: str) -> str:
    placed = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        community.resident(household_id),
        json={"category": "groceries", "items": items},
    )
    return str(placed["order_id"])


def test_a_cadre_answers_by_digit_and_a_resident_confirms_or_asks_for_a_call(
    community: Community,
) -> None:
    community.define()
    phone = f"137{random.randrange(10**8):08d}"
    cadre = community.volunteer("g3", capacity=1, phone=phone)
    home = community.household("g3")
    household = community.ok(
        "GET", "orders", f"/v1/households/{home['household_id']}", community.staff
    )
    first = order(community, home["household_id"], "rice")
    offer = community.offer_for(cadre, first)
    told = eventually(
        lambda: [
            n
            for n in community.inbox(community.volunteer_token(cadre))["items"]
            if n["kind"] == "offer.made"
        ],
        what="the cadre told of the offer",
    )
    assert "Reply 1 to accept, 2 to decline" in told[0]["body"]  # the message says the digits

    # A signature made with another secret, or long ago, is refused; nothing is accepted.
    assert text(community, phone, "1", secret="x" * 40).status_code == 401
    assert text(community, phone, "1", at=time.time() - 3600).status_code == 401
    assert community.tasks(cadre)[0]["state"] == "offered"

    accepted = text(community, f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}", "1")
    assert f"order {first} is yours" in reply(accepted)
    community.order_status(first, "assigned")
    # The gateway delivering the same message again: refused, nothing decided twice.
    replayed = community.http.post(
        community.url("notify", "/hooks/sms"),
        content=accepted.request.content,
        headers=dict(accepted.request.headers),
    )
    assert replayed.status_code == 409

    code = community.order(community.staff, first)["handoff_code"]
    wrong = "0000" if code != "0000" else "1111"
    assert "not done" in reply(text(community, phone, f"D {wrong}"))
    assert community.order(community.staff, first)["status"] == "assigned"
    assert f"order {first} delivered" in reply(text(community, phone, f"d{code}"))
    community.order_status(first, "delivered")

    # The resident's phone: 1 confirms the delivery, 9 puts them on the call list.
    resident_phone = household["phone"]
    eventually(
        lambda: any(
            n["kind"] == "task.delivered"
            for n in community.inbox(community.resident(home["household_id"]))["items"]
        ),
        what="the resident told of the delivery",
    )
    assert "confirmed" in reply(text(community, resident_phone, "1"))
    assert "will call you" in reply(text(community, resident_phone, "9"))
    calls = community.ok("GET", "notify", "/v1/call-list", community.staff)["entries"]
    assert [c["household_id"] for c in calls if c["kind"] == "call_me"] == [home["household_id"]]
    assert "Reply 1 when it has arrived, 9" in reply(text(community, resident_phone, "hello?"))

    # Declined by digit: the offer goes on (nobody else here: escalated to the grid worker).
    second = order(community, home["household_id"], "eggs")
    community.offer_for(cadre, second)
    eventually(  # the text that asks for the digit has reached the cadre's phone
        lambda: community.inbox(community.volunteer_token(cadre))["items"][0]["order_id"] == second,
        what="the cadre texted about the second offer",
    )
    assert "declined" in reply(text(community, phone, "2"))
    eventually(
        lambda: all(t["order_id"] != second for t in community.tasks(cadre)),
        what="the declined offer gone from the cadre",
    )
    # Help for what the digits do not say, and for a number nobody registered.
    assert "Reply 1 to accept" in reply(text(community, phone, "yes please"))
    assert "not registered" in reply(text(community, "13000000000", "1"))
    assert offer["order_id"] == first


def test_a_code_at_the_door_delivers_that_door_and_a_phone_answers_what_asked_it_last(
    community: Community,
) -> None:
    community.define()
    phone = f"137{random.randrange(10**8):08d}"
    cadre = community.volunteer("g3", capacity=2, phone=phone)
    # The cadre's own family lives here, with the cadre's phone as its contact.
    room = f"{random.randrange(10**5):05d}"
    family = community.import_households([f"Datong Garden,1,1,{room},g3,{phone},"])
    own = family["imported"][0]["household_id"]
    other = community.household("g3")["household_id"]
    orders = [order(community, own, "rice"), order(community, other, "eggs")]
    for order_id in orders:
        community.offer_for(cadre, order_id)
        assert community.act(cadre, order_id, "accept").status_code == 200
    code = community.order(community.staff, orders[0])["handoff_code"]

    # At the family's door, the cadre texts its code: that order is delivered, not the
    # latest offer's.
    assert f"order {orders[0]} delivered" in reply(text(community, phone, f"Ｄ {code}"))
    community.order_status(orders[0], "delivered")
    assert community.order(community.staff, orders[1])["status"] == "assigned"

    # The last text to that phone asked the household to confirm: "1" confirms it.
    eventually(
        lambda: any(
            n["kind"] == "task.delivered" for n in community.inbox(community.resident(own))["items"]
        ),
        what="the family told of the delivery",
    )
    assert "confirmed" in reply(text(community, phone, "1", message_id="gw-42"))
    # The gateway's retry, signed anew a second later: the same message, refused.
    again = text(community, phone, "1", at=time.time() + 1, message_id="gw-42")
    assert again.status_code == 409


def test_one_reply_takes_a_buildings_parcels_from_the_gate_as_a_batch(
    community: Community,
) -> None:
    community.define(sourced_via_gate=True)
    phone = f"137{random.randrange(10**8):08d}"
    cadre = community.volunteer("g1", capacity=3, phone=phone)
    rows = [f"Datong Garden,6,1,{101 + i},g1,139{random.randrange(10**8):08d}," for i in range(2)]
    homes = [h["household_id"] for h in community.import_households(rows)["imported"]]
    sid = community.supplier()
    ordered = [order(community, home, "蔬菜包") for home in homes]
    community.bought_and_at_the_gate(sid, ordered)
    for order_id in ordered:
        community.offer_for(cadre, order_id)
    eventually(
        lambda: (
            len(
                [
                    n
                    for n in community.inbox(community.volunteer_token(cadre))["items"]
                    if n["kind"] == "offer.made" and "Datong Garden 6" in n["body"]
                ]
            )
            == 2
        ),
        what="the cadre told of both parcels, from the gate",
    )

    answered = reply(text(community, phone, "1"))

    assert "2 parcels for Datong Garden 6 are yours" in answered, answered
    assert answered.startswith("Doorstep: Datong Garden 6 的 2 件包裹归您")
    assert {t["order_id"]: t["state"] for t in community.tasks(cadre)} == {
        o: "assigned" for o in ordered
    }
