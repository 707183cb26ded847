"""Scenario 4: staff enter an order for a household without a smartphone, found by its
contact-card code; on delivery the staff's call list says whom to phone."""

from __future__ import annotations

from typing import Any

from tests.e2e.client import Community, eventually


def test_staff_order_by_card_code_ends_on_the_call_list(community: Community) -> None:
    community.define()
    home = community.household("g2", flags="elderly_alone;no_smartphone")
    volunteer = community.volunteer("g2")
    staff = community.staff

    card = home["card_code"]
    spoken = f"{card[:3].lower()} {card[3:].lower()}"  # read out over the phone
    found = community.ok(
        "GET",
        "orders",
        f"/v1/communities/{community.community_id}/households",
        staff,
        params={"card_code": spoken},
    )["households"]
    assert [h["household_id"] for h in found] == [home["household_id"]]
    assert "no_smartphone" in found[0]["flags"]

    order = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        staff,
        json={
            "household_id": home["household_id"],
            "category": "medicine",
            "items": "blood pressure pills",
        },
    )
    assert order["channel"] == "staff_proxy" and order["placed_by_role"] == "staff"

    order_id = order["order_id"]
    community.offer_for(volunteer, order_id)
    community.act(volunteer, order_id, "accept")
    community.act(volunteer, order_id, "pick-up")
    delivered = community.act(
        volunteer, order_id, "deliver", photo_url="https://photos.example/door.jpg"
    )
    assert delivered.status_code == 200, delivered.text
    community.order_status(order_id, "delivered")

    entry = eventually(
        lambda: next(
            (
                e
                for e in community.ok("GET", "notify", "/v1/call-list", staff)["entries"]
                if e["kind"] == "task.delivered" and e["order_id"] == order_id
            ),
            None,
        ),
        what="a call-list entry for the delivery",
    )
    assert entry["household_id"] == home["household_id"]
    assert entry["card_code"] == card and entry["phone"]
    community.ok("POST", "notify", f"/v1/call-list/{entry['id']}/done", staff)
    remaining = community.ok("GET", "notify", "/v1/call-list", staff)["entries"]
    assert entry["id"] not in [e["id"] for e in remaining]

    # Nothing was pushed to a phone the household does not have.
    inbox = community.inbox(community.resident(home["household_id"]))
    assert inbox["items"] and {n["channel"] for n in inbox["items"]} == {"call_list"}


def test_a_household_without_any_phone_is_registered_and_reached_through_its_grid_worker(
    community: Community,
) -> None:
    community.define()
    imported = community.import_households(["Datong Garden,9,1,101,g4,,elderly_alone"])
    assert imported["rejected"] == []
    home = imported["imported"][0]
    staff = community.staff
    found = community.ok("GET", "orders", f"/v1/households/{home['household_id']}", staff)
    assert found["phone"] is None

    order = community.ok(
        "POST",
        "orders",
        "/v1/orders",
        staff,
        json={"household_id": home["household_id"], "category": "groceries", "items": "rice"},
    )
    entry = eventually(
        lambda: next(
            (
                e
                for e in community.ok("GET", "notify", "/v1/call-list", staff)["entries"]
                if e["order_id"] == order["order_id"]
            ),
            None,
        ),
        what="a call-list entry for the household without a phone",
    )
    assert entry["reach"] == "grid_worker" and entry["phone"] is None
    assert (entry["grid_worker"], entry["grid_worker_phone"]) == ("Grid worker 4", "13800000004")
    # Nothing pushed: it has no phone to push to.
    inbox = community.inbox(community.resident(home["household_id"]))
    assert {n["channel"] for n in inbox["items"]} == {"call_list"}


def test_a_household_without_a_smartphone_is_called_once_with_all_that_changed(
    community: Community,
) -> None:
    community.define()
    cadre = community.volunteer("g1")
    home = community.household("g1", flags="no_smartphone")["household_id"]
    neighbour = community.household("g1", flags="no_smartphone")["household_id"]
    staff = community.staff
    body = {"household_id": home, "category": "medicine", "items": "降压药"}
    order = community.ok("POST", "orders", "/v1/orders", staff, json=body)["order_id"]
    community.ok("POST", "orders", "/v1/orders", staff, json={**body, "household_id": neighbour})
    community.offer_for(cadre, order)
    for step in ("accept", "pick-up"):
        assert community.act(cadre, order, step).status_code == 200
    code = community.order(staff, order)["handoff_code"]
    assert community.act(cadre, order, "deliver", handoff_code=code).status_code == 200

    def call_to(household: str, at_least: int) -> dict[str, Any] | None:
        calls = community.ok("GET", "notify", "/v1/call-list", staff)["households"]
        found = [c for c in calls if c["household_id"] == household]
        assert len(found) <= 1  # one call per household, never one per message
        return found[0] if found and len(found[0]["messages"]) >= at_least else None

    call = eventually(lambda: call_to(home, 4), what="every step told, in one call")
    kinds = [m["kind"] for m in call["messages"]]
    assert kinds.index("task.picked_up") < kinds.index("task.delivered")
    # Called after the second message: what came after waits for the next call.
    second = call["messages"][1]
    called = community.ok(
        "POST",
        "notify",
        f"/v1/call-list/households/{home}/done",
        staff,
        json={"upto": second["id"]},
    )
    assert called["done"] >= 2
    rest = call_to(home, 1)
    assert rest is not None and [m["id"] for m in rest["messages"]] == [
        m["id"] for m in call["messages"][2:]
    ]
    # Another household's entry, or none: nothing marked.
    wrong = community.call(
        "POST",
        "notify",
        f"/v1/call-list/households/{neighbour}/done",
        staff,
        json={"upto": second["id"]},
    )
    assert wrong.status_code == 404
    assert call_to(neighbour, 1) is not None
