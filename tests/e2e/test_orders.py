"""Orders' lifecycle through the real services: idempotent creation, likely duplicates held
for staff, cancelling, failure and re-opening."""

from __future__ import annotations

from shared.auth import Role, mint
from tests.e2e.client import Community, eventually
from tests.e2e.conftest import SIGNING_KEY


def test_a_retried_request_returns_the_first_order_and_never_makes_a_second(
    community: Community,
) -> None:
    community.define()
    home = community.household("g1")
    resident = community.resident(home["household_id"])
    body = {"category": "groceries", "items": "vegetables"}
    first = community.call(
        "POST", "orders", "/v1/orders", resident, json=body, headers={"Idempotency-Key": "a1"}
    )
    # Nobody is on duty, so the order is escalated before the retry comes: the retry must
    # still return it (its nested escalation timestamp included).
    eventually(
        lambda: community.order(resident, first.json()["order_id"])["escalated"], what="escalation"
    )
    again = community.call(
        "POST", "orders", "/v1/orders", resident, json=body, headers={"Idempotency-Key": "a1"}
    )
    assert first.status_code == again.status_code == 201
    assert first.json()["order_id"] == again.json()["order_id"]
    other = community.call(
        "POST",
        "orders",
        "/v1/orders",
        resident,
        json={**body, "items": "eggs"},
        headers={"Idempotency-Key": "a1"},
    )
    assert other.status_code == 422
    assert len(community.ok("GET", "orders", "/v1/orders", resident)["orders"]) == 1


def test_a_likely_duplicate_is_held_and_flagged_to_staff_never_silently_doubled(
    community: Community,
) -> None:
    community.define()
    volunteer = community.volunteer("g2")
    home = community.household("g2")
    resident = community.resident(home["household_id"])
    first = community.ok(
        "POST", "orders", "/v1/orders", resident, json={"category": "garbage", "items": "1 bag"}
    )
    second = community.ok(
        "POST", "orders", "/v1/orders", resident, json={"category": "garbage", "items": "1 bag"}
    )
    assert first["status"] == "accepted"
    assert second["status"] == "held" and second["duplicate_of"] == first["order_id"]
    note = eventually(
        lambda: next(
            (n for n in community.inbox(community.staff)["items"] if n["kind"] == "order.held"),
            None,
        ),
        what="staff told of the held order",
    )
    assert note["order_id"] == second["order_id"]
    community.offer_for(volunteer, first["order_id"])
    assert not [t for t in community.tasks(volunteer) if t["order_id"] == second["order_id"]]
    # Staff decide it is a real second request: it joins the queue.
    assert (
        community.ok("POST", "orders", f"/v1/orders/{second['order_id']}/accept", community.staff)[
            "status"
        ]
        == "accepted"
    )


def test_cancel_until_pickup_then_failure_and_reopening(community: Community) -> None:
    community.define()
    volunteer = community.volunteer("g4", capacity=2)
    home = community.household("g4")
    resident = community.resident(home["household_id"])
    cancelled = community.ok(
        "POST", "orders", "/v1/orders", resident, json={"category": "groceries", "items": "rice"}
    )
    community.offer_for(volunteer, cancelled["order_id"])
    community.act(volunteer, cancelled["order_id"], "accept")
    assert (
        community.ok(
            "POST",
            "orders",
            f"/v1/orders/{cancelled['order_id']}/cancel",
            resident,
            json={"reason": "a neighbour brought it"},
        )["status"]
        == "cancelled"
    )
    eventually(lambda: not community.tasks(volunteer), what="the task to leave the volunteer")

    order = community.ok(
        "POST", "orders", "/v1/orders", resident, json={"category": "medicine", "items": "aspirin"}
    )
    oid = order["order_id"]
    community.offer_for(volunteer, oid)
    community.act(volunteer, oid, "accept")
    community.act(volunteer, oid, "pick-up")
    community.order_status(oid, "picked_up")
    refused = community.call("POST", "orders", f"/v1/orders/{oid}/cancel", resident)
    assert refused.status_code == 409
    assert (
        community.act(volunteer, oid, "fail", reason="not_home", note="nobody answered").status_code
        == 200
    )
    failed = community.order_status(oid, "failed")
    assert failed["failure"]["reason"] == "not_home"
    eventually(
        lambda: any(n["kind"] == "task.failed" for n in community.inbox(community.staff)["items"]),
        what="staff told of the failure",
    )
    # The household was told "the community will call you": it is on the call list, though
    # it has a smartphone.
    eventually(
        lambda: any(
            c["kind"] == "task.failed" and c["order_id"] == oid
            for c in community.ok("GET", "notify", "/v1/call-list", community.staff)["entries"]
        ),
        what="the household on the call list after the failure",
    )
    # Staff decide to retry: the order is offered again.
    assert (
        community.ok("POST", "orders", f"/v1/orders/{oid}/reopen", community.staff)["status"]
        == "accepted"
    )
    community.offer_for(volunteer, oid)


def test_staff_override_the_priority(community: Community) -> None:
    community.define()
    home = community.household("g6", flags="elderly_alone")
    order = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        community.resident(home["household_id"]),
        json={"category": "groceries", "items": "noodles"},
    )
    assert order["priority"] == 55 and not order["priority_overridden"]
    changed = community.ok(
        "PUT",
        "orders",
        f"/v1/orders/{order['order_id']}/priority",
        community.staff,
        json={"priority": 95},
    )
    assert changed["priority"] == 95 and changed["priority_overridden"]
    resident_try = community.call(
        "PUT",
        "orders",
        f"/v1/orders/{order['order_id']}/priority",
        community.resident(home["household_id"]),
        json={"priority": 100},
    )
    assert resident_try.status_code == 403


def test_a_cancel_right_after_pickup_is_refused_and_the_order_is_delivered(
    community: Community,
) -> None:
    """Whether a cancel holds is dispatch's to say: the resident's cancel sent the moment
    the cadre picked up (before orders may have heard of it) is refused, and the delivery
    that follows is the household's last word."""
    community.define()
    volunteer = community.volunteer("g2")
    home = community.household("g2")
    resident = community.resident(home["household_id"])
    order = community.ok(
        "POST", "orders", "/v1/orders", resident, json={"category": "groceries", "items": "tofu"}
    )
    oid = order["order_id"]
    community.offer_for(volunteer, oid)
    community.act(volunteer, oid, "accept")
    assert community.act(volunteer, oid, "pick-up").status_code == 200
    refused = community.call("POST", "orders", f"/v1/orders/{oid}/cancel", resident)
    assert refused.status_code == 409, refused.text
    assert (
        community.act(volunteer, oid, "deliver", handoff_code=order["handoff_code"]).status_code
        == 200
    )
    delivered = community.order_status(oid, "delivered")
    assert "cancelled" not in [h["status"] for h in delivered["history"]]


def test_an_idempotency_key_belongs_to_the_household_whatever_the_token_subject(
    community: Community,
) -> None:
    """Two households whose tokens share a subject (as development tokens once did) and
    send the README's own example key each get their own order."""
    community.define()
    homes = [community.household("g1")["household_id"], community.household("g2")["household_id"]]
    body = {"category": "groceries", "items": "rice"}
    orders = [
        community.ok(
            "POST",
            "orders",
            "/v1/orders",
            mint(
                SIGNING_KEY,
                role=Role.resident,
                subject="resident",
                community_id=community.community_id,
                household_id=home,
            ),
            json=body,
            headers={"Idempotency-Key": "walk-1"},
        )
        for home in homes
    ]
    assert [o["household_id"] for o in orders] == homes
    assert orders[0]["order_id"] != orders[1]["order_id"]
