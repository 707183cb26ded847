"""Identity's reads and writes against the real database: the per-address limit on codes
(counted across instances there) and the directory of who a phone is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.identity.api import within_address_limit
from services.identity.directory import Directory
from shared.contracts import orders as o
from shared.contracts import volunteers as v
from shared.events import Event
from shared.problem import Problem
from tests.conftest import Stack


def asked_from(address: str, limit: int) -> Any:
    state = SimpleNamespace(codes_per_address_hour=limit)
    return SimpleNamespace(client=SimpleNamespace(host=address), app=SimpleNamespace(state=state))


async def test_an_address_asking_too_many_codes_is_told_when_to_try_again(
    stack: Stack, unique: str
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    db = client[f"identity_{unique}"]
    try:
        for _ in range(3):
            await within_address_limit(asked_from("10.0.0.7", 3), db)
        with pytest.raises(Problem) as refused:
            await within_address_limit(asked_from("10.0.0.7", 3), db)
        assert refused.value.status == 429
        assert 3500 < int(refused.value.headers["Retry-After"]) <= 3601
        await within_address_limit(asked_from("10.0.0.8", 3), db)  # another address: fine
    finally:
        await client.drop_database(f"identity_{unique}")
        await client.close()


async def test_the_directory_says_who_a_phone_is_now_whatever_order_events_come_in(
    stack: Stack, unique: str
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    directory = Directory(client[f"directory_{unique}"])
    t0 = datetime(2022, 5, 28, 8, 0, tzinfo=UTC)

    def grid_worker(n: int, phone: str, minutes: int) -> Event:
        grid = o.Grid(grid_id="g3", name="Grid 3", grid_worker="Zhao", grid_worker_phone=phone)
        defined = o.CommunityDefined(community_id="datong", name="Datong", grids=[grid])
        return Event(
            id=f"orders:datong:{n}:0",
            source="/orders",
            community_id="datong",
            time=t0 + timedelta(minutes=minutes),
            data=defined,
        )

    def cadre(n: int, removed: bool, minutes: int) -> Event:
        fact: Any = (
            v.VolunteerRemoved(volunteer_id="vol_1", phone="13900000001")
            if removed
            else v.VolunteerApproved(
                volunteer_id="vol_1", name="Li", phone="13900000001", home_grid_id="g3", capacity=1
            )
        )
        return Event(
            id=f"volunteers:datong:{n}:0",
            source="/volunteers",
            community_id="datong",
            time=t0 + timedelta(minutes=minutes),
            data=fact,
        )

    old, new, li = "8613800000003", "8613800000009", "8613900000001"
    try:
        await directory.ensure_indexes()
        await directory.handle_batch([grid_worker(1, "13800000003", 0), cadre(1, False, 0)])
        assert [x.role for x in await directory.identities_of(old)] == ["grid_worker"]
        assert [x.role for x in await directory.identities_of(li)] == ["volunteer"]
        # Replaced and removed; then the same batch again (a redo) and an older fact that
        # arrives late (another partition's lag): nothing changes back.
        await directory.handle_batch([grid_worker(2, "13800000009", 5), cadre(2, True, 5)])
        await directory.handle_batch([grid_worker(2, "13800000009", 5), cadre(2, True, 5)])
        await directory.handle_batch([grid_worker(3, "13800000003", 1), cadre(3, False, 1)])
        assert await directory.identities_of(old) == []
        assert [x.identity_id for x in await directory.identities_of(new)] == [
            "grid_worker:datong:g3"
        ]
        assert await directory.identities_of(li) == []
        assert await directory.identities_of("8613700000000") == []  # nobody
    finally:
        await client.drop_database(f"directory_{unique}")
        await client.close()


async def test_a_relatives_number_given_up_no_longer_signs_in_for_the_household(
    stack: Stack, unique: str
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    directory = Directory(client[f"directory_{unique}"])
    t0 = datetime(2022, 5, 28, 8, 0, tzinfo=UTC)
    own, relative = "8613900000002", "8613800000002"

    def at(n: int, minutes: int, data: Any) -> Event:
        return Event(
            id=f"orders:datong:{n}:0",
            source="/orders",
            community_id="datong",
            time=t0 + timedelta(minutes=minutes),
            data=data,
        )

    registered = o.HouseholdRegistered(
        household_id="hh_1",
        grid_id="g1",
        address="民主路小区 8-2-301",
        phone="13900000002",
        card_code="K7M2AC",
        relative_phones=["13800000002"],
    )
    changed = o.HouseholdPhonesChanged(
        household_id="hh_1", address="民主路小区 8-2-301", phone="13900000002"
    )
    try:
        await directory.ensure_indexes()
        await directory.handle_batch([at(1, 0, registered)])
        for phone in (own, relative):
            (who,) = await directory.identities_of(phone)
            assert who.identity_id == "resident:datong:hh_1" and who.name == "民主路小区 8-2-301"
        await directory.handle_batch([at(2, 5, changed)])
        assert [x.household_id for x in await directory.identities_of(own)] == ["hh_1"]
        assert await directory.identities_of(relative) == []
    finally:
        await client.drop_database(f"directory_{unique}")
        await client.close()
