"""Matching: pure ranking rules, with property tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.dispatch import matching
from services.dispatch.matching import Candidate, Need
from shared.contracts.orders import Category
from shared.contracts.volunteers import Skill

T0 = datetime(2022, 5, 1, 8, 0, tzinfo=UTC)
NEIGHBOURS = {f"g{i}": [f"g{j}" for j in (i - 1, i + 1) if 1 <= j <= 7] for i in range(1, 8)}


def need(grid: str = "g3", category: Category = Category.groceries, **kw: object) -> Need:
    values: dict[str, object] = {
        "order_id": "o1",
        "grid_id": grid,
        "category": category,
        "priority": 30,
        "placed_at": T0,
        "tried": frozenset(),
    }
    values.update(kw)
    return Need(**values)  # type: ignore[arg-type]


def cand(
    vid: str,
    grid: str,
    load: int = 0,
    capacity: int = 2,
    idle_min: int = 0,
    skills: tuple[Skill, ...] = (Skill.delivery,),
) -> Candidate:
    return Candidate(vid, grid, frozenset(skills), capacity, load, T0 + timedelta(minutes=idle_min))


def test_same_grid_beats_neighbour_beats_the_rest_of_the_community() -> None:
    ranked = matching.rank(
        need("g3"), [cand("far", "g7"), cand("next", "g4"), cand("here", "g3")], NEIGHBOURS
    )
    assert [c.volunteer_id for c in ranked] == ["here", "next", "far"]


def test_among_equals_the_least_loaded_then_the_longest_idle() -> None:
    ranked = matching.rank(
        need(),
        [
            cand("busy", "g3", load=1),
            cand("rested", "g3", idle_min=0),
            cand("fresh", "g3", idle_min=5),
        ],
        NEIGHBOURS,
    )
    assert [c.volunteer_id for c in ranked] == ["rested", "fresh", "busy"]


def test_skills_capacity_and_earlier_refusals_exclude() -> None:
    candidates = [
        cand("nurse", "g3", skills=(Skill.medical,)),
        cand("driver", "g3", skills=(Skill.driving,)),
        cand("full", "g3", load=2, capacity=2, skills=(Skill.medical,)),
        cand("declined", "g3", skills=(Skill.medical,)),
    ]
    home_test = need(category=Category.home_test, tried=frozenset({"declined"}))
    assert [c.volunteer_id for c in matching.rank(home_test, candidates, NEIGHBOURS)] == ["nurse"]
    transfer = need(category=Category.transfer)
    assert [c.volunteer_id for c in matching.rank(transfer, candidates, NEIGHBOURS)] == ["driver"]
    visit = need(category=Category.visit)  # anyone can visit
    assert len(matching.rank(visit, candidates, NEIGHBOURS)) == 3


def test_urgent_first_then_first_come() -> None:
    late_urgent = need(order_id="medicine", priority=85, placed_at=T0 + timedelta(minutes=9))
    early = need(order_id="vegetables-1", priority=30, placed_at=T0)
    later = need(order_id="vegetables-2", priority=30, placed_at=T0 + timedelta(minutes=1))
    assert [n.order_id for n in matching.queue([later, early, late_urgent])] == [
        "medicine",
        "vegetables-1",
        "vegetables-2",
    ]


grids = st.sampled_from([f"g{i}" for i in range(1, 8)])
candidates = st.lists(
    st.builds(
        cand,
        vid=st.text("abcdefgh", min_size=1, max_size=4),
        grid=grids,
        load=st.integers(0, 3),
        capacity=st.integers(1, 3),
        idle_min=st.integers(0, 60),
        skills=st.lists(st.sampled_from(list(Skill)), max_size=3).map(tuple),
    ),
    max_size=12,
)
needs = st.builds(
    need,
    grid=grids,
    category=st.sampled_from(list(Category)),
    tried=st.frozensets(st.text("abcdefgh", min_size=1, max_size=4), max_size=3),
)


@given(needs, candidates)
def test_every_ranked_candidate_is_eligible_and_none_eligible_is_left_out(
    n: Need, cs: list[Candidate]
) -> None:
    ranked = matching.rank(n, cs, NEIGHBOURS)
    assert all(c.load < c.capacity and c.volunteer_id not in n.tried for c in ranked)
    skill = matching.REQUIRED_SKILL[n.category]
    assert all(skill is None or skill in c.skills for c in ranked)
    assert sorted(map(id, ranked)) == sorted(id(c) for c in cs if matching.eligible(n, c))


@given(needs, candidates)
def test_the_ranking_never_puts_a_farther_grid_before_a_nearer_one(
    n: Need, cs: list[Candidate]
) -> None:
    ranks = [
        matching.grid_rank(n.grid_id, c.grid_id, NEIGHBOURS)
        for c in matching.rank(n, cs, NEIGHBOURS)
    ]
    assert ranks == sorted(ranks)
    # ...within a grid rank, cadres with a scarce skill come after those without, and
    # among those alike load never goes down.
    ranked = matching.rank(n, cs, NEIGHBOURS)
    for a, b in itertools.pairwise(ranked):
        if matching.grid_rank(n.grid_id, a.grid_id, NEIGHBOURS) == matching.grid_rank(
            n.grid_id, b.grid_id, NEIGHBOURS
        ):
            assert matching.scarce(a.skills) <= matching.scarce(b.skills)
            if matching.scarce(a.skills) == matching.scarce(b.skills):
                assert a.load <= b.load


@given(needs, candidates)
def test_the_free_volunteers_index_chooses_whom_the_ranking_puts_first(
    n: Need, cs: list[Candidate]
) -> None:
    unique = list({c.volunteer_id: c for c in cs}.values())
    free = matching.FreeVolunteers()
    for c in unique:
        free.file(c)
    ranked = matching.rank(n, unique, NEIGHBOURS)
    assert free.best(n, NEIGHBOURS) == (ranked[0].volunteer_id if ranked else None)
    skill = matching.REQUIRED_SKILL[n.category]
    assert free.anyone_with(skill) == any(
        c.load < c.capacity and (skill is None or skill in c.skills) for c in unique
    )


@given(candidates, st.data())
def test_a_volunteer_refiled_or_withdrawn_is_found_as_they_are_now(
    cs: list[Candidate], data: st.DataObject
) -> None:
    free = matching.FreeVolunteers()
    now: dict[str, Candidate] = {}
    for c in cs:  # the same id filed again: their newer load and grid count
        free.file(c)
        now[c.volunteer_id] = c
    gone = data.draw(st.sets(st.sampled_from(sorted(now)))) if now else set()
    for vid in gone:
        free.withdraw(vid)
        del now[vid]
    n = data.draw(needs)
    ranked = matching.rank(n, list(now.values()), NEIGHBOURS)
    assert free.best(n, NEIGHBOURS) == (ranked[0].volunteer_id if ranked else None)


queued = st.builds(
    need,
    order_id=st.text("opq", min_size=1, max_size=4),
    category=st.sampled_from(list(Category)),
    priority=st.integers(0, 3),
    placed_at=st.sampled_from([T0, T0 + timedelta(minutes=1)]),
)


@given(st.lists(queued, max_size=20, unique_by=lambda n: n.order_id), st.data())
def test_the_waiting_queue_keeps_the_queue_order_per_skill(
    ns: list[Need], data: st.DataObject
) -> None:
    waiting = matching.WaitingQueue()
    for n in ns:
        waiting.add(n)
    gone = data.draw(st.sets(st.sampled_from([n.order_id for n in ns]))) if ns else set()
    for order_id in gone:
        waiting.remove(order_id)
    left = [n for n in ns if n.order_id not in gone]
    assert len(waiting) == len(left)
    for skill in waiting.skills():
        expected = [
            n.order_id for n in matching.queue(left) if matching.REQUIRED_SKILL[n.category] == skill
        ]
        assert [u[2] for u in waiting.walk(skill)] == expected  # the walk the board takes
