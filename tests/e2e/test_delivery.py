"""Scenario 1: a resident in grid 3 orders medicine; a volunteer on duty in grid 3 is
offered it, accepts, picks up and delivers with the handoff code; the resident's inbox
and live stream show each step in order; the order reads delivered."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import httpx
import jwt

from shared.auth import Role
from tests.e2e.client import Community, auth, eventually, token
from tests.gateway import GatewayServer

RESIDENT_STEPS = ["order.accepted", "task.assigned", "task.picked_up", "task.delivered"]


def read_stream(
    url: str,
    headers: dict[str, str],
    want: int,
    into: list[dict[str, str]],
    live: threading.Event,
) -> None:
    with httpx.Client(timeout=60) as client, client.stream("GET", url, headers=headers) as response:
        event: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(": live"):  # subscribed: from now on nothing is missed
                live.set()
                continue
            if not line:
                if "id" in event:
                    into.append(event)
                    if len(into) >= want:
                        return
                event = {}
                continue
            field, _, value = line.partition(":")
            event[field] = value.strip()


def test_medicine_reaches_the_door_and_the_resident_sees_every_step(community: Community) -> None:
    community.define()
    home = community.household("g3", flags="elderly_alone")
    resident = community.resident(home["household_id"])
    volunteer = community.volunteer("g3")
    elsewhere = community.volunteer("g6")  # on duty, but not the nearest

    streamed: list[dict[str, str]] = []
    live = threading.Event()
    listener = threading.Thread(
        target=read_stream,
        args=(
            community.url("notify", "/v1/inbox/stream"),
            auth(resident),
            len(RESIDENT_STEPS),
            streamed,
            live,
        ),
        daemon=True,
    )
    listener.start()
    assert live.wait(30), "the stream never said it was live"

    placed = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        resident,
        json={"category": "medicine", "items": "insulin, 2 boxes"},
    )
    order_id = placed["order_id"]
    assert placed["status"] == "accepted"
    assert placed["priority"] == 85  # medicine 60 + elderly living alone 25
    assert placed["grid_id"] == "g3"

    offer = community.offer_for(volunteer, order_id)
    assert offer["category"] == "medicine" and offer["grid_id"] == "g3"
    assert community.tasks(elsewhere) == []

    assert community.act(volunteer, order_id, "accept").json()["state"] == "assigned"
    community.order_status(order_id, "assigned")
    assert community.act(volunteer, order_id, "pick-up").json()["state"] == "picked_up"
    community.order_status(order_id, "picked_up")

    wrong = community.act(
        volunteer,
        order_id,
        "deliver",
        handoff_code="0000" if placed["handoff_code"] != "0000" else "1111",
    )
    assert wrong.status_code == 422
    assert wrong.headers["content-type"] == "application/problem+json"
    code = community.order(resident, order_id)["handoff_code"]
    delivered = community.act(volunteer, order_id, "deliver", handoff_code=code)
    assert delivered.status_code == 200, delivered.text

    order = community.order_status(order_id, "delivered")
    assert [h["status"] for h in order["history"]] == [
        "received",
        "accepted",
        "assigned",
        "picked_up",
        "delivered",
    ]
    assert order["volunteer_id"] == volunteer

    inbox = eventually(
        # The items, not the unread count: the count is read a moment after the page, so
        # it can already include a notification the page has not.
        lambda: (
            (i := community.inbox(resident))
            and len(i["items"]) >= len(RESIDENT_STEPS)
            and i["unread"] >= len(RESIDENT_STEPS)
            and i
        ),
        what="four notifications in the resident's inbox",
    )
    assert [n["kind"] for n in reversed(inbox["items"])] == RESIDENT_STEPS
    assert all(n["order_id"] == order_id for n in inbox["items"])
    the_trail_shows_each_step(community, order_id, resident, volunteer)

    listener.join(timeout=30)
    assert [e["event"] for e in streamed] == RESIDENT_STEPS
    assert [json.loads(e["data"])["kind"] for e in streamed] == RESIDENT_STEPS
    ids = [e["id"] for e in streamed]
    assert ids == sorted(ids)

    # Resuming the stream after the second event replays exactly the rest.
    resumed: list[dict[str, str]] = []
    read_stream(
        community.url("notify", "/v1/inbox/stream"),
        {**auth(resident), "Last-Event-ID": ids[1]},
        2,
        resumed,
        threading.Event(),
    )
    assert [e["id"] for e in resumed] == ids[2:]

    # The volunteer was told of the offer; marking it read lowers the unread count.
    vol_inbox = community.inbox(community.volunteer_token(volunteer))
    offer_note = next(n for n in vol_inbox["items"] if n["kind"] == "offer.made")
    community.ok(
        "POST", "notify", f"/v1/inbox/{offer_note['id']}/read", community.volunteer_token(volunteer)
    )
    assert (
        community.inbox(community.volunteer_token(volunteer))["unread"] == vol_inbox["unread"] - 1
    )


def test_push_notifications_go_out_through_the_gateway(
    community: Community, gateway: GatewayServer
) -> None:
    community.define()
    volunteer = community.volunteer("g5")
    home = community.household("g5")
    order = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        community.resident(home["household_id"]),
        json={"category": "garbage", "items": "2 bags"},
    )
    community.offer_for(volunteer, order["order_id"])
    pushed = eventually(  # (after "you are approved")
        lambda: [
            b
            for _, b in list(gateway.received)
            if b["recipient"] == f"volunteer:{volunteer}" and b["kind"] == "offer.made"
        ],
        what="the offer pushed to the volunteer's phone",
    )
    assert pushed[0]["order_id"] == order["order_id"]
    state = eventually(
        lambda: (
            (
                s := community.ok(
                    "GET",
                    "notify",
                    f"/v1/notifications/{pushed[0]['id']}/delivery",
                    community.staff,
                )
            )["state"]
            == "delivered"
            and s
        ),
        what="the delivery state",
    )
    assert state["channel"] == "push"


def resident_subject(tok: str) -> str:
    return str(jwt.decode(tok, options={"verify_signature": False})["sub"])


def the_trail_shows_each_step(
    community: Community, order_id: str, resident: str, volunteer: str
) -> None:
    # The audit trail, from the owners' logs: who did what, in order, on either side.
    subject = {"subject": f"order/{order_id}"}
    placed_by = community.ok("GET", "orders", "/v1/audit", community.staff, params=subject)
    kinds = [(s["kind"], s["type"]) for s in placed_by["steps"]]
    assert kinds[:3] == [
        ("command", "doorstep.order.place.v1"),
        ("event", "doorstep.order.received.v1"),
        ("event", "doorstep.order.accepted.v1"),
    ]
    assert placed_by["steps"][0]["actor"] == resident_subject(resident)
    assert placed_by["steps"][0]["status"] == 201
    done = eventually(
        lambda: (
            (t := community.ok("GET", "dispatch", "/v1/audit", community.staff, params=subject))
            and any(s["type"] == "doorstep.task.delivered.v1" for s in t["steps"])
            and t
        ),
        what="the delivery in dispatch's trail",
    )
    by_volunteer = [s["type"] for s in done["steps"] if s["actor"] == volunteer]
    assert by_volunteer == [
        "doorstep.offer.accept.v1",
        "doorstep.task.pick_up.v1",
        "doorstep.task.deliver.v1",  # the wrong code, refused
        "doorstep.task.deliver.v1",
    ]
    assert [s["status"] for s in done["steps"] if s["actor"] == volunteer] == [200, 200, 422, 200]
    # Another community's staff see none of it.
    other = token(Role.staff, "elsewhere")
    assert community.ok("GET", "dispatch", "/v1/audit", other, params=subject)["steps"] == []


def test_goods_with_a_cadre_who_went_off_duty_escalate_and_staff_give_them_to_another(
    community: Community,
) -> None:
    community.define()
    home = community.household("g2")
    resident = community.resident(home["household_id"])
    first = community.volunteer("g2", capacity=1)
    placed = community.ok(
        "POST", "orders", "/v1/orders", resident, json={"category": "groceries", "items": "rice"}
    )
    order_id = placed["order_id"]
    community.offer_for(first, order_id)
    assert community.act(first, order_id, "accept").status_code == 200
    assert community.act(first, order_id, "pick-up").status_code == 200
    community.order_status(order_id, "picked_up")

    # The cadre goes home holding the rice: the grid worker is told at once, by name.
    tok = community.volunteer_token(first)
    community.ok("POST", "volunteers", f"/v1/volunteers/{first}/check-out", tok)
    escalated = eventually(
        lambda: next(
            (
                p
                for kind, p in community.dispatch_events(order_id)
                if kind == "order.escalated" and "went off duty" in p["reason"]
            ),
            None,
        ),
        what="the grid worker told of goods with a cadre gone off duty",
    )
    assert escalated["order"]["grid_id"] == "g2"

    # Staff call a second cadre, who checks in, and give them the task, with the reason.
    second = community.volunteer("g2", capacity=1)
    reason = "first cadre went home ill; fetch the rice from them"
    staff = community.staff
    moved = community.call(
        "POST",
        "dispatch",
        f"/v1/tasks/{order_id}/release",
        staff,
        json={"reason": reason, "volunteer_id": second},
    )
    assert moved.status_code == 200, moved.text
    community.offer_for(second, order_id)
    assert community.act(second, order_id, "accept").status_code == 200
    order = eventually(
        lambda: (o := community.order(staff, order_id))["volunteer_id"] == second and o,
        what="the order with the second cadre",
    )
    assert order["status"] == "assigned"
    trail = community.ok(
        "GET", "dispatch", "/v1/audit", staff, params={"subject": f"order/{order_id}"}
    )["steps"]
    assert any(s["type"] == "doorstep.task.release.v1" and s["status"] == 200 for s in trail)
    inbox = eventually(
        lambda: (
            (i := [m["kind"] for m in community.inbox(resident)["items"]])
            and "task.released" in i
            and i
        ),
        what="the resident told another volunteer is coming",
    )
    assert "task.released" in inbox


def test_a_delivery_photo_is_taken_once_only_where_a_photo_proves_and_only_as_a_photo(
    community: Community,
) -> None:
    community.define()
    cadre, bystander = community.volunteer("g2", capacity=2), community.volunteer("g3")
    placed = {}
    for category in ("garbage", "groceries"):
        body = {"household_id": community.household("g2")["household_id"], "category": category}
        placed[category] = community.ok(
            "POST", "orders", "/v1/orders", community.staff, json={**body, "items": "一袋"}
        )["order_id"]
        community.offer_for(cadre, placed[category])
        assert community.act(cadre, placed[category], "accept").status_code == 200
    garbage, groceries = placed["garbage"], placed["groceries"]
    jpeg = b"\xff\xd8\xff\xe0" + bytes(2000)

    def put(photo_id: str, order: str, vid: str, content: bytes = jpeg) -> httpx.Response:
        return community.put_photo(vid, order, photo_id, content)

    photo_id = str(uuid.uuid4())
    assert put(photo_id, garbage, cadre, b"<html>not a photo</html>").status_code == 415
    assert put(photo_id, garbage, bystander).status_code == 404  # not their task
    assert put(photo_id, groceries, cadre).status_code == 422  # a code proves
    assert put("not-a-uuid", garbage, cadre).status_code == 422
    assert put(photo_id, garbage, cadre, b"\xff\xd8\xff" + bytes(700_000)).status_code == 413
    first, again = put(photo_id, garbage, cadre), put(photo_id, garbage, cadre)
    assert first.status_code == again.status_code == 201  # a retry after a lost answer
    assert (
        community.call(
            "GET", "dispatch", f"/v1/photos/{photo_id}", community.volunteer_token(bystander)
        ).status_code
        == 404
    )  # another cadre does not see it
    unknown = community.act(cadre, garbage, "deliver", photo_id=str(uuid.uuid4()))
    assert unknown.status_code == 404, unknown.text
    both = community.act(cadre, garbage, "deliver", photo_id=photo_id, handoff_code="1234")
    assert both.status_code == 422
    done = community.act(cadre, garbage, "deliver", photo_id=photo_id)
    assert done.status_code == 200, done.text
    community.order_status(garbage, "delivered")
    shown = community.call("GET", "dispatch", f"/v1/photos/{photo_id}", community.staff)
    assert (shown.status_code, shown.content) == (200, jpeg)


def test_one_orders_trace_goes_from_the_post_to_the_residents_and_the_cadres_messages(
    community: Community,
) -> None:
    """The caller's W3C trace context names the request; the command, the owners' events on
    two services and notify's messages all carry it."""
    community.define()
    cadre = community.volunteer("g1")
    home = community.household("g1")["household_id"]
    resident = community.resident(home)
    trace_id = uuid.uuid4().hex
    placed = community.call(
        "POST",
        "orders",
        "/v1/orders",
        resident,
        json={"category": "medicine", "items": "降压药"},
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    assert placed.status_code == 201, placed.text
    assert placed.headers["X-Correlation-ID"] == trace_id
    order_id = placed.json()["order_id"]

    def about_the_order(token: str, kind: str) -> dict[str, Any] | None:
        return next(
            (
                n
                for n in community.inbox(token)["items"]
                if n["order_id"] == order_id and n["kind"] == kind
            ),
            None,
        )

    told = eventually(lambda: about_the_order(resident, "order.accepted"), what="accepted")
    offered = eventually(
        lambda: about_the_order(community.volunteer_token(cadre), "offer.made"),
        what="the offer",
    )
    assert told["trace_id"] == offered["trace_id"] == trace_id  # orders → dispatch → notify
