"""Scenario 4: staff enter an order for a household without a smartphone, found by its
contact-card code; on delivery the staff's call list says whom to phone."""

from __future__ import annotations

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
