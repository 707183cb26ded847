from __future__ import annotations

from services.notify.messages import messages_for
from shared.contracts import dispatch as d
from shared.contracts import orders as o


def test_residents_hear_of_their_order_from_orders_events_only() -> None:
    changed = o.OrderStatusChanged(
        order_id="o1", household_id="h1", status="picked_up", volunteer_name="Li Wei"
    )
    [message] = messages_for(changed, "datong")
    assert (message.recipient, message.kind) == ("household:h1", "task.picked_up")
    assert "Li Wei" in message.body
    ref = d.OrderRef(order_id="o1", household_id="h1", grid_id="g3")
    delivered = d.TaskDelivered(order=ref, volunteer_id="v1", proof="handoff_code")
    assert messages_for(delivered, "datong") == []  # told through orders' own event


def test_failures_and_escalations_reach_staff_and_the_grid_worker() -> None:
    ref = d.OrderRef(order_id="o1", household_id="h1", grid_id="g3")
    failed = d.TaskFailed(order=ref, volunteer_id="v1", reason=d.FailureReason.not_home)
    assert [m.recipient for m in messages_for(failed, "datong")] == ["staff:datong"]
    escalated = d.OrderEscalated(
        order=ref, grid_worker="Wang", grid_worker_phone="1", reason="nobody"
    )
    assert [m.recipient for m in messages_for(escalated, "datong")] == [
        "grid_worker:datong:g3",
        "staff:datong",
    ]


def test_a_cadre_whose_walk_list_staff_gave_to_another_is_told() -> None:
    from shared.contracts import campaigns as c

    moved = c.WalkListTaken(
        campaign_id="cmp_1",
        list_id="cmp_1-0002",
        volunteer_id="zhao",
        grid_id="g1",
        from_volunteer_id="li",
        building="Datong Garden 9",
    )
    (told,) = messages_for(moved, "datong")
    assert told.recipient == "volunteer:li" and "Datong Garden 9" in told.body
    assert "已交给" in told.body  # Chinese first


def test_a_cadre_is_told_when_approved_and_when_their_shift_ended_by_itself() -> None:
    from shared.contracts import volunteers as v

    approved = v.VolunteerApproved(
        volunteer_id="li", name="Li", phone="13700000001", home_grid_id="g1", capacity=2
    )
    (told,) = messages_for(approved, "datong")
    assert told.recipient == "volunteer:li" and "审核" in told.body and "check in" in told.body
    ended = v.ShiftEnded(volunteer_id="li", shift_id="s1", reason="expired")
    (over,) = messages_for(ended, "datong")
    assert over.recipient == "volunteer:li" and "值班已结束" in over.body
    # Checking out themself: they know.
    assert (
        messages_for(v.ShiftEnded(volunteer_id="li", shift_id="s1", reason="checked_out"), "d")
        == []
    )
