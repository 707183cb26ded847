"""The dispatch board: decisions and the invariants that must hold after every one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from services.dispatch.board import Board, Rejection, TaskState
from services.dispatch.handlers import DispatchRules, take_batch
from shared.contracts import dispatch as d
from shared.contracts.orders import Category, Grid, HouseholdFlag, OrderFacts
from shared.contracts.volunteers import Skill
from shared.events import Event

T0 = datetime(2022, 5, 1, 8, 0, tzinfo=UTC)
GRIDS = [
    Grid(
        grid_id=f"g{i}",
        name=f"Grid {i}",
        grid_worker=f"W{i}",
        grid_worker_phone="13800000000",
        neighbours=[f"g{j}" for j in (i - 1, i + 1) if 1 <= j <= 7],
    )
    for i in range(1, 8)
]


def facts(
    order_id: str, grid: str = "g3", category: Category = Category.groceries, priority: int = 30
) -> OrderFacts:
    return OrderFacts(
        order_id=order_id,
        household_id=f"h-{order_id}",
        grid_id=grid,
        category=category,
        items="rice",
        priority=priority,
        address="1-1-101",
        handoff_code="1234",
        placed_at=T0,
    )


def board_with(*volunteers: tuple[str, str, int]) -> Board:
    board = Board(community_id="datong", offer_timeout_seconds=120)
    board.define(GRIDS, T0)
    for vid, grid, capacity in volunteers:
        board.volunteer_approved(vid, vid.title(), [Skill.delivery], capacity, T0)
        board.shift_started(vid, f"s-{vid}", grid, T0)
    return board


def kinds(events: list) -> list[str]:  # type: ignore[type-arg]
    return [e.type.split(".", 1)[1].rsplit(".", 1)[0] for e in events]


def test_an_order_is_offered_accepted_picked_up_and_delivered_with_the_code() -> None:
    board = board_with(("li", "g3", 2))
    assert kinds(board.order_open(facts("o1"), T0)) == ["offer.made"]
    assert kinds(board.accept("o1", "li", T0)) == ["task.assigned"]
    assert kinds(board.pick_up("o1", "li", T0)) == ["task.picked_up"]
    with pytest.raises(Rejection):
        board.deliver("o1", "li", "9999", None, T0)
    assert kinds(board.deliver("o1", "li", "1234", None, T0)) == ["task.delivered"]
    assert board.tasks == {} and board.load("li") == 0


def picked_up(order: OrderFacts) -> Board:
    board = board_with(("li", "g3", 2))
    board.order_open(order, T0)
    board.accept(order.order_id, "li", T0)
    board.pick_up(order.order_id, "li", T0)
    return board


def test_five_wrong_handoff_codes_lock_the_delivery_and_tell_the_grid_worker() -> None:
    board = picked_up(facts("o1"))
    for left in (4, 3, 2, 1):
        with pytest.raises(Rejection) as refused:
            board.deliver("o1", "li", "0000", None, T0)
        assert refused.value.status == 422 and f"{left} tries left" in refused.value.reason
        assert refused.value.events == []
    with pytest.raises(Rejection) as locked:
        board.deliver("o1", "li", "0000", None, T0)
    assert locked.value.status == 423 and kinds(locked.value.events) == ["order.escalated"]
    assert locked.value.events[0].grid_worker == "W3"  # type: ignore[attr-defined]
    # Locked: not even the right code (or a photo) delivers it now; a failure report does.
    for code, photo in (("1234", None), (None, "https://p.example/door.jpg")):
        with pytest.raises(Rejection) as again:
            board.deliver("o1", "li", code, photo, T0)
        assert again.value.status == 423 and again.value.events == []
    assert kinds(board.fail("o1", "li", d.FailureReason.other, "code", T0)) == ["task.failed"]


def test_a_photo_proves_delivery_only_of_garbage_or_to_a_household_without_a_smartphone() -> None:
    photo = "https://p.example/door.jpg"
    with pytest.raises(Rejection):
        picked_up(facts("o1")).deliver("o1", "li", None, photo, T0)
    garbage = picked_up(facts("o2", category=Category.garbage))
    assert kinds(garbage.deliver("o2", "li", None, photo, T0)) == ["task.delivered"]
    elderly = facts("o3").model_copy(update={"household_flags": [HouseholdFlag.no_smartphone]})
    assert kinds(picked_up(elderly).deliver("o3", "li", None, photo, T0)) == ["task.delivered"]


def test_a_lapsed_offer_goes_to_the_next_and_nobody_left_escalates_once() -> None:
    board = board_with(("li", "g3", 1), ("wang", "g3", 1))
    board.order_open(facts("o1"), T0)
    first = board.tasks["o1"].volunteer_id
    later = T0 + timedelta(seconds=121)
    assert [t.order.order_id for t in board.due_offers(later)] == ["o1"]
    assert kinds(board.expire("o1", first, 1, later)) == ["offer.expired", "offer.made"]
    second = board.tasks["o1"].volunteer_id
    assert second != first
    assert kinds(board.decline("o1", second, later)) == ["offer.declined", "order.escalated"]
    assert board.tasks["o1"].escalated and board.tasks["o1"].state is TaskState.waiting
    assert board.match(later) == []  # escalated once, not again on every input
    # An answer to the old offer is stale.
    assert board.expire("o1", first, 1, later) == []


def test_an_escalated_order_goes_back_to_a_volunteer_who_let_it_pass_once_they_are_free() -> None:
    board = board_with(("li", "g3", 1))
    board.order_open(facts("busy"), T0)
    board.accept("busy", "li", T0)
    board.volunteer_approved("li", "Li", [Skill.delivery], 2, T0)
    board.order_open(facts("o1"), T0)
    assert kinds(board.decline("o1", "li", T0)) == ["offer.declined", "order.escalated"]
    assert board.match(T0) == []  # not asked again at once
    events = board.deliver("busy", "li", "1234", None, T0)
    assert kinds(events) == ["task.delivered", "offer.made"]
    assert board.tasks["o1"].volunteer_id == "li"


def test_a_new_check_in_takes_an_escalated_order() -> None:
    board = board_with()
    events = board.order_open(facts("o1"), T0)
    assert isinstance(events[0], d.OrderEscalated) and events[0].grid_worker == "W3"
    board.volunteer_approved("zhao", "Zhao", [Skill.delivery], 1, T0)
    assert kinds(board.shift_started("zhao", "s1", "g5", T0)) == ["offer.made"]


def test_staff_send_an_escalated_order_round_again_to_those_who_let_it_pass() -> None:
    board = board_with(("li", "g3", 1))
    board.order_open(facts("o1"), T0)
    assert kinds(board.decline("o1", "li", T0)) == ["offer.declined", "order.escalated"]
    assert kinds(board.offer_again("o1", T0)) == ["offer.made"]
    assert board.tasks["o1"].volunteer_id == "li" and not board.tasks["o1"].escalated
    with pytest.raises(Rejection, match="offered, not waiting"):
        board.offer_again("o1", T0)
    with pytest.raises(Rejection, match="no such open order"):
        board.offer_again("gone", T0)


def test_sent_round_again_with_nobody_free_it_escalates_again() -> None:
    board = board_with()
    board.order_open(facts("o1"), T0)
    assert kinds(board.offer_again("o1", T0)) == ["order.escalated"]


def test_staff_offer_a_waiting_order_to_the_cadre_they_choose_if_on_duty_with_room() -> None:
    board = board_with(("li", "g1", 1), ("wang", "g7", 1))
    board.order_open(facts("busy", grid="g1"), T0)
    board.accept("busy", "li", T0)
    board.order_open(facts("o1", grid="g1"), T0)  # wang is far away: offered to wang or not
    if board.tasks["o1"].state is TaskState.offered:
        board.decline("o1", "wang", T0)
    with pytest.raises(Rejection, match="at capacity"):
        board.offer_to("o1", "li", T0)
    with pytest.raises(Rejection, match="not on duty"):
        board.offer_to("o1", "nobody", T0)
    assert kinds(board.offer_to("o1", "wang", T0)) == ["offer.made"]
    assert board.tasks["o1"].volunteer_id == "wang" and board.load("wang") == 1


def test_an_order_not_taken_in_time_escalates_once_even_while_offers_go_round() -> None:
    board = board_with(("li", "g3", 1))
    board.escalate_after_seconds = 600
    board.order_open(facts("o1"), T0)
    assert board.late_orders(T0 + timedelta(minutes=9)) == []
    late = T0 + timedelta(minutes=11)
    assert [t.order.order_id for t in board.late_orders(late)] == ["o1"]
    events = board.escalate_late("o1", late)
    assert isinstance(events[0], d.OrderEscalated) and "11 minutes" in events[0].reason
    assert board.tasks["o1"].state is TaskState.offered  # the offer stays live
    assert board.late_orders(late) == [] and board.escalate_late("o1", late) == []


def test_cancelling_withdraws_the_offer_and_frees_the_volunteer() -> None:
    board = board_with(("li", "g3", 1))
    board.order_open(facts("o1"), T0)
    board.order_open(facts("o2"), T0)  # waits: li is full
    events = board.cancel("o1", "resident", T0)
    assert kinds(events) == ["task.cancelled", "offer.withdrawn", "offer.made"]
    assert board.tasks["o2"].volunteer_id == "li"


def test_a_resident_cannot_cancel_once_the_goods_are_picked_up_but_staff_can() -> None:
    board = board_with(("li", "g3", 2))
    board.order_open(facts("o1"), T0)
    board.accept("o1", "li", T0)
    board.pick_up("o1", "li", T0)
    assert kinds(board.cancel("o1", "resident", T0)) == ["task.cancel_refused"]
    assert board.tasks["o1"].state is TaskState.picked_up
    assert kinds(board.cancel("o1", "staff", T0))[:2] == ["task.cancelled", "offer.withdrawn"]
    assert "o1" not in board.tasks


def test_a_cancel_after_delivery_is_refused_and_nothing_is_delivered_twice() -> None:
    board = board_with(("li", "g3", 2))
    board.order_open(facts("o1"), T0)
    board.accept("o1", "li", T0)
    board.deliver("o1", "li", "1234", None, T0)
    assert kinds(board.cancel("o1", "staff", T0)) == ["task.cancel_refused"]


def test_urgent_orders_are_offered_first() -> None:
    board = board_with()
    board.order_open(facts("vegetables", priority=30), T0)
    board.order_open(facts("medicine", priority=85), T0 + timedelta(minutes=5))
    board.volunteer_approved("li", "Li", [Skill.delivery], 1, T0)
    events = board.shift_started("li", "s1", "g3", T0)
    assert [e.order.order_id for e in events if isinstance(e, d.OfferMade)] == ["medicine"]


class BoardMachine(RuleBasedStateMachine):
    """Random interleavings of facts and answers never break the board's invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.board = Board(community_id="c", offer_timeout_seconds=60)
        self.board.define(GRIDS, T0)
        self.rules = DispatchRules(offer_timeout_seconds=60, escalate_after_seconds=600)
        self.stored: dict[str, dict[str, Any]] = {}
        self.now = T0
        self.orders = 0

    def tick(self) -> datetime:
        self.now += timedelta(seconds=7)
        return self.now

    @rule(
        vid=st.sampled_from(["a", "b", "c", "d"]),
        grid=st.sampled_from(["g1", "g3", "g4", "g7"]),
        capacity=st.integers(1, 3),
    )
    def check_in(self, vid: str, grid: str, capacity: int) -> None:
        self.board.volunteer_approved(
            vid, vid, [Skill.delivery, Skill.medical], capacity, self.tick()
        )
        self.board.shift_started(vid, f"s-{vid}-{self.orders}", grid, self.now)

    @rule(vid=st.sampled_from(["a", "b", "c", "d"]))
    def check_out(self, vid: str) -> None:
        v = self.board.volunteers.get(vid)
        if v and v.shift_id:
            self.board.shift_ended(vid, v.shift_id, self.tick())

    @rule(
        grid=st.sampled_from([g.grid_id for g in GRIDS]),
        category=st.sampled_from(list(Category)),
        priority=st.integers(0, 100),
    )
    def order(self, grid: str, category: Category, priority: int) -> None:
        self.orders += 1
        self.board.order_open(facts(f"o{self.orders}", grid, category, priority), self.tick())

    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        live = [t for t in self.board.tasks.values() if t.volunteer_id]
        if not live:
            return
        task = data.draw(st.sampled_from(live))
        action = data.draw(
            st.sampled_from(["accept", "decline", "expire", "pick_up", "deliver", "fail", "cancel"])
        )
        oid, vid, now = task.order.order_id, task.volunteer_id, self.tick()
        assert vid is not None
        try:
            if action == "accept":
                self.board.accept(oid, vid, now)
            elif action == "decline":
                self.board.decline(oid, vid, now)
            elif action == "expire":
                self.board.expire(oid, vid, task.attempt, now)
            elif action == "pick_up":
                self.board.pick_up(oid, vid, now)
            elif action == "deliver":
                self.board.deliver(oid, vid, "1234", None, now)
            elif action == "fail":
                self.board.fail(oid, vid, d.FailureReason.not_home, None, now)
            else:
                self.board.cancel(oid, "staff", now)
        except Rejection:
            pass

    @rule(data=st.data())
    def staff_act(self, data: st.DataObject) -> None:
        waiting = [t for t in self.board.tasks.values() if t.state is TaskState.waiting]
        if not waiting:
            return
        oid = data.draw(st.sampled_from(waiting)).order.order_id
        try:
            if data.draw(st.booleans()):
                self.board.offer_again(oid, self.tick())
            else:
                vid = data.draw(st.sampled_from(["a", "b", "c", "d"]))
                self.board.offer_to(oid, vid, self.tick())
        except Rejection:
            pass

    @invariant()
    def nobody_over_capacity(self) -> None:
        # Accepted tasks stay when a capacity is lowered; offers never exceed it.
        for v in self.board.volunteers.values():
            accepted = sum(
                1
                for t in self.board.tasks.values()
                if t.volunteer_id == v.volunteer_id and t.state is not TaskState.offered
            )
            assert self.board.load(v.volunteer_id) <= max(v.capacity, accepted)

    @invariant()
    def every_task_is_visibly_somewhere(self) -> None:
        for task in self.board.tasks.values():
            assert (task.state is TaskState.waiting) == (task.volunteer_id is None)
            if task.state is TaskState.offered:
                assert task.offer_expires_at is not None
                assert self.board.volunteers[task.volunteer_id].shift_grid_id is not None  # type: ignore[index]

    @invariant()
    def the_documents_stored_rebuild_the_same_board_with_the_same_indexes(self) -> None:
        for change in self.rules.changes(self.board):
            documents = self.stored.setdefault(change.collection, {})
            if change.doc is None:
                documents.pop(change.doc_id)
            else:
                assert not (change.new and change.doc_id in documents)  # inserted only once
                documents[change.doc_id] = change.doc
        docs = {kind: list(found.values()) for kind, found in self.stored.items()}
        rebuilt = self.rules.restore("c", docs)
        assert rebuilt.model_dump() == self.board.model_dump()
        assert rebuilt.ix.agreement() == self.board.ix.agreement()

    @invariant()
    def waiting_tasks_have_no_free_suitable_volunteer_or_are_escalated(self) -> None:
        # After every decision the board has matched: a waiting task is either escalated
        # or nobody eligible is free for it.
        assert self.board.match(self.now) == []


BoardMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestBoardMachine = BoardMachine.TestCase


def test_an_order_held_for_review_is_late_only_counting_from_when_it_was_accepted() -> None:
    board = board_with()  # nobody on duty: it waits
    board.escalate_after_seconds = 600
    accepted = T0 + timedelta(minutes=10)  # placed at T0, held ten minutes for review
    board.order_open(facts("o1"), accepted)
    assert board.late_orders(accepted + timedelta(seconds=1)) == []
    (late,) = board.late_orders(accepted + timedelta(minutes=10))
    assert late.order.order_id == "o1"


def test_a_cadre_going_off_duty_gives_back_what_they_have_not_picked_up() -> None:
    board = board_with(("v1", "g3", 2), ("v2", "g3", 1))
    board.order_open(facts("o1"), T0)
    board.accept("o1", board.tasks["o1"].volunteer_id or "", T0)
    holder = board.tasks["o1"].volunteer_id or ""
    events = board.shift_ended(holder, f"s-{holder}", T0 + timedelta(hours=1))
    assert "task.released" in kinds(events)
    released = next(e for e in events if isinstance(e, d.TaskReleased))
    assert released.volunteer_id == holder and released.state == "assigned"
    task = board.tasks["o1"]
    assert task.volunteer_id != holder  # offered to the cadre still on duty, or waiting


def test_goods_picked_up_by_a_cadre_who_went_off_duty_escalate_and_staff_move_them() -> None:
    board = board_with(("v1", "g3", 1))
    board.order_open(facts("o1"), T0)
    board.accept("o1", "v1", T0)
    board.pick_up("o1", "v1", T0)
    events = board.shift_ended("v1", "s-v1", T0 + timedelta(hours=5))
    (escalated,) = [e for e in events if isinstance(e, d.OrderEscalated)]
    assert escalated.reason.startswith("V1 went off duty") and escalated.grid_worker == "W3"
    assert board.tasks["o1"].state is TaskState.picked_up  # the goods are with them
    assert board.late_orders(T0 + timedelta(hours=9)) == []  # told once, not again
    # Staff phone another cadre, who checks in; the task goes to them, the reason kept.
    board.volunteer_approved("v2", "V2", [Skill.delivery], 1, T0)
    board.shift_started("v2", "s-v2", "g3", T0 + timedelta(hours=5))
    moved = board.release("o1", "bring the goods back from v1's door", "v2", T0, None)
    assert kinds(moved)[0] == "task.released" and moved[0].state == "picked_up"  # type: ignore[attr-defined]
    assert board.tasks["o1"].volunteer_id == "v2" and board.tasks["o1"].state is TaskState.offered


def test_staff_unlock_a_delivery_locked_by_wrong_codes_and_it_can_be_delivered() -> None:
    board = board_with(("v1", "g3", 1))
    board.order_open(facts("o1"), T0)
    board.accept("o1", "v1", T0)
    for _ in range(5):
        with pytest.raises(Rejection):
            board.deliver("o1", "v1", "0000", None, T0)
    unlocked = board.unlock("o1", "the resident read the code wrong; checked by phone", None)
    assert kinds(unlocked) == ["task.unlocked"]
    assert kinds(board.deliver("o1", "v1", "1234", None, T0))[0] == "task.delivered"
    with pytest.raises(Rejection, match="not locked"):
        board.order_open(facts("o2"), T0)
        board.unlock("o2", "no reason", None)


def test_a_code_texted_at_the_door_delivers_the_task_it_belongs_to() -> None:
    board = board_with(("v1", "g3", 2))
    first, second = facts("o1"), facts("o2").model_copy(update={"handoff_code": "5678"})
    for order in (first, second):
        board.order_open(order, T0)
        board.accept(order.order_id, "v1", T0)
    done = board.deliver_by_code("v1", "5678", T0)  # the second household's door
    assert kinds(done)[0] == "task.delivered" and "o2" not in board.tasks
    with pytest.raises(Rejection):  # none of theirs, and one held: counted on it
        board.deliver_by_code("v1", "0000", T0)
    assert board.tasks["o1"].wrong_codes == 1


def test_busy_is_not_absent_an_order_waits_for_a_busy_cadre_and_escalates_late_saying_so() -> None:
    board = board_with(("v1", "g3", 1))
    board.escalate_after_seconds = 600
    board.order_open(facts("o1"), T0)
    board.accept("o1", "v1", T0)
    events = board.order_open(facts("o2"), T0)  # the only cadre is at capacity
    assert [e for e in events if isinstance(e, d.OrderEscalated)] == []
    (late,) = board.late_orders(T0 + timedelta(minutes=10))
    (escalated,) = board.escalate_late(late.order.order_id, T0 + timedelta(minutes=10))
    assert "busy" in escalated.reason  # type: ignore[attr-defined]
    # Free again, the cadre is offered it.
    board.deliver("o1", "v1", "1234", None, T0 + timedelta(minutes=11))
    assert board.tasks["o2"].state is TaskState.offered
    # Nobody with the skill on duty at all: escalated at once, as before.
    alone = board_with()
    (absent,) = alone.order_open(facts("o3"), T0)
    assert "no suitable volunteer on duty" in absent.reason  # type: ignore[attr-defined]


def test_the_only_driver_is_kept_for_the_transfer_a_groceries_run_could_go_without() -> None:
    board = board_with()
    board.volunteer_approved("driver", "Driver", [Skill.delivery, Skill.driving], 1, T0)
    board.shift_started("driver", "s-d", "g3", T0)
    board.volunteer_approved("walker", "Walker", [Skill.delivery], 1, T0 + timedelta(hours=1))
    board.shift_started("walker", "s-w", "g3", T0 + timedelta(hours=1))  # idle less long
    board.order_open(facts("rice"), T0 + timedelta(hours=2))
    assert board.tasks["rice"].volunteer_id == "walker"
    board.order_open(facts("ride", category=Category.transfer), T0 + timedelta(hours=2))
    assert board.tasks["ride"].volunteer_id == "driver"


def test_goods_from_outside_are_offered_only_once_their_parcel_is_at_the_gate() -> None:
    board = board_with(("li", "g3", 2))
    expected = facts("o1").model_copy(update={"awaits_gate": True})
    assert board.order_open(expected, T0) == []  # a cadre is free, but the goods are not here
    assert board.tasks["o1"].state is TaskState.expected
    assert board.escalate_late("o1", T0 + timedelta(hours=3)) == []  # not late: not here yet
    offered = board.at_gate("o1", T0 + timedelta(hours=4))
    assert kinds(offered) == ["offer.made"] and board.tasks["o1"].state is TaskState.offered
    assert board.tasks["o1"].opened_at == T0 + timedelta(hours=4)  # late counts from the gate
    assert board.at_gate("o1", T0 + timedelta(hours=5)) == []  # scanned twice: once


def test_an_order_whose_goods_are_still_expected_is_cancelled_by_the_resident() -> None:
    board = board_with(("li", "g3", 2))
    board.order_open(facts("o1").model_copy(update={"awaits_gate": True}), T0)
    assert kinds(board.cancel("o1", "resident", T0)) == ["task.cancelled"]
    assert board.at_gate("o1", T0) == []  # the parcel came anyway: nothing to carry


def test_parcels_at_the_gate_for_one_building_go_to_the_cadre_already_carrying_there() -> None:
    board = board_with(("li", "g3", 3), ("wang", "g3", 3))

    def parcel(order_id: str, building: str) -> OrderFacts:
        return facts(order_id).model_copy(update={"awaits_gate": True, "building": building})

    for order_id, building in [("o1", "9"), ("o2", "9"), ("o3", "10"), ("o4", "9"), ("o5", "9")]:
        board.order_open(parcel(order_id, building), T0)
    holder = {}
    for order_id in ("o1", "o2", "o3", "o4"):
        [offer] = board.at_gate(order_id, T0 + timedelta(minutes=1))
        holder[order_id] = offer.volunteer_id  # type: ignore[attr-defined]
    first = holder["o1"]
    other = "wang" if first == "li" else "li"
    # One walk up building 9's stairs: its parcels go together, up to the cadre's capacity;
    # building 10's to the other cadre (fair load).
    assert [holder[o] for o in ("o2", "o4")] == [first, first]
    assert holder["o3"] == other

    # The fourth of 9, with the first cadre full: not added to the other's walk to 10 (nor
    # escalated); it waits for a batch of its own, taken once that walk has left the gate.
    assert board.at_gate("o5", T0 + timedelta(minutes=2)) == []
    assert board.tasks["o5"].state is TaskState.waiting and not board.tasks["o5"].escalated
    board.accept("o3", other, T0 + timedelta(minutes=3))
    picked = board.pick_up("o3", other, T0 + timedelta(minutes=4))
    assert kinds(picked) == ["task.picked_up", "offer.made"]
    assert picked[1].volunteer_id == other  # type: ignore[attr-defined]


def test_the_next_batch_from_the_gate_starts_with_its_medicine_though_it_came_later() -> None:
    board = board_with(("li", "g3", 2))
    board.order_open(facts("bin", category=Category.garbage), T0)  # li's hands are full
    board.order_open(facts("bin2", category=Category.garbage), T0)
    rice = facts("rice").model_copy(update={"awaits_gate": True, "building": "9"})
    pills = facts("pills", category=Category.medicine, priority=80).model_copy(
        update={"awaits_gate": True, "building": "10"}
    )
    for parcel, at in ((rice, T0), (pills, T0 + timedelta(minutes=5))):
        board.order_open(parcel, T0)
        assert board.at_gate(parcel.order_id, at) == []
    for chore in ("bin", "bin2"):
        board.accept(chore, "li", T0)
        board.pick_up(chore, "li", T0)
    freed = board.deliver("bin", "li", "1234", None, T0 + timedelta(minutes=9))
    assert [e.order.order_id for e in freed if kinds([e]) == ["offer.made"]] == ["pills"]  # type: ignore[attr-defined]
    # Building 9's rice is not added to the walk to 10: it waits for a batch of its own.
    board.deliver("bin2", "li", "1234", None, T0 + timedelta(minutes=10))
    assert board.tasks["rice"].state is TaskState.waiting


def test_a_cadre_takes_a_buildings_parcels_as_one_and_one_that_lapsed_is_refused_by_name() -> None:
    board = board_with(("li", "g3", 3), ("wang", "g3", 3))
    for order_id in ("o1", "o2", "o3"):
        board.order_open(
            facts(order_id).model_copy(update={"awaits_gate": True, "building": "9"}), T0
        )
        board.at_gate(order_id, T0)
    holder = board.tasks["o1"].volunteer_id
    assert holder is not None and {board.tasks[o].volunteer_id for o in ("o2", "o3")} == {holder}
    board.accept("o2", holder, T0)  # one accepted already, from the list
    board.expire("o3", holder, 1, T0 + timedelta(minutes=3))  # one lapsed meanwhile
    take = d.TakeBatch(
        command_id="c1", volunteer_id=holder, order_ids=["o1", "o2", "o3", "o1"], pick_up=True
    )
    done = take_batch(board, Event(source="/t", community_id="datong", data=take), T0)
    assert done.outcome is not None and done.outcome.body["taken"] == ["o1", "o2"]  # type: ignore[index]
    assert [r["order_id"] for r in done.outcome.body["refused"]] == ["o3"]  # type: ignore[index]
    assert [board.tasks[o].state for o in ("o1", "o2")] == [TaskState.picked_up] * 2
    assert kinds(done.events)[:3] == ["task.assigned", "task.picked_up", "task.picked_up"]
    with pytest.raises(Rejection) as nothing:  # none of them theirs any more: refused whole
        take_batch(
            board,
            Event(
                source="/t",
                community_id="datong",
                data=take.model_copy(update={"order_ids": ["o3"]}),
            ),
            T0,
        )
    assert nothing.value.status == 409
