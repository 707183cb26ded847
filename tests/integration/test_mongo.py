"""Documents through the real MongoDB-protocol server (FerretDB here, mongo:7 in Docker)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import ReplaceOne
from pymongo.errors import DuplicateKeyError

from shared import mongo


async def test_documents_round_trip_and_a_unique_index_rejects_a_duplicate(db: Any) -> None:
    await mongo.ping(db)
    households = db["households"]
    await households.create_index([("community_id", 1), ("card_code", 1)], unique=True)
    doc = {
        "_id": "h-1",
        "community_id": "datong",
        "card_code": "K7M2",
        "address": {"compound": "Datong", "building": "3", "unit": "2", "room": "401"},
        "flags": ["elderly_alone", "no_smartphone"],
        "created_at": datetime(2026, 5, 1, 3, 40, tzinfo=UTC),
        "outbox": [{"id": "e1", "published": False}],
    }
    await households.insert_one(doc)
    assert await households.find_one({"_id": "h-1"}) == doc

    with pytest.raises(DuplicateKeyError):
        await households.insert_one({**doc, "_id": "h-2"})
    with pytest.raises(DuplicateKeyError):
        await households.insert_one(doc)
    assert await households.count_documents({}) == 1


async def plan(db: Any, collection: str, query: dict[str, Any], **page: Any) -> str:
    """How the store runs a find (``page``: its sort and limit): SQLite's plan on FerretDB,
    the winning plan on MongoDB."""
    explained = await db.command("explain", {"find": collection, "filter": query, **page})
    if "queryPlanner" in explained and "Plan" in explained["queryPlanner"]:
        return " ".join(explained["queryPlanner"]["Plan"])  # FerretDB on SQLite
    return str(explained["queryPlanner"]["winningPlan"])  # MongoDB: IXSCAN or COLLSCAN


async def test_lookups_by_id_and_by_indexed_fields_use_an_index_and_find_every_match(
    db: Any,
) -> None:
    # The hot paths (an inbox page, a household by card code, a replace by _id) must not
    # read the whole collection; FerretDB on SQLite did, until deploy/ferretdb/patches.json.
    notes = db["notifications"]
    await notes.create_index([("recipient", 1), ("seq", 1)])
    odd = "household/h-1 <&> 'quoted'"  # not pushed down (escapes): found by a scan
    docs = [
        {"_id": f"n{i}", "recipient": f"household/h-{i % 3}", "seq": i, "tags": ["a"]}
        for i in range(30)
    ] + [{"_id": "odd", "recipient": odd, "seq": 99}]
    await notes.insert_many(docs)
    for query in ({"_id": "n7"}, {"recipient": "household/h-1"}):
        assert "SCAN notifications" not in (p := await plan(db, "notifications", query))
        assert "SEARCH" in p or "IXSCAN" in p or "IDHACK" in p or "EXPRESS" in p, p
    # A newest-first page is read in the index's order and stops at the page: no sort of
    # every match (SQLite: no temporary B-tree; MongoDB: no SORT stage).
    page = await plan(
        db, "notifications", {"recipient": "household/h-1"}, sort={"seq": -1}, limit=5
    )
    assert "SCAN notifications" not in page and "TEMP B-TREE" not in page, page
    assert "'SORT'" not in page, page
    newest = await notes.find({"recipient": "household/h-1"}).sort("seq", -1).limit(5).to_list()
    assert [d["_id"] for d in newest] == ["n28", "n25", "n22", "n19", "n16"]
    # Every match, whatever is pushed down: the full filter still applies after.
    mine = await notes.find({"recipient": "household/h-1", "seq": {"$gt": 10}}).to_list()
    assert [d["_id"] for d in mine] == [f"n{i}" for i in range(13, 30, 3)]
    assert await notes.count_documents({"recipient": "household/h-2"}) == 10
    # The count command: counted by the store where the filter is pushed down, else by
    # reading; the same answer either way.
    for query, n in (
        ({"recipient": "household/h-2"}, 10),
        ({"recipient": "household/h-2", "tags": "a"}, 10),
        ({"recipient": "household/h-2", "seq": {"$gt": 20}}, 3),
        ({"recipient": odd}, 1),
        ({"recipient": "nobody"}, 0),
    ):
        assert (await db.command("count", "notifications", query=query))["n"] == n, query
    assert [d["_id"] for d in await notes.find({"recipient": odd}).to_list()] == ["odd"]
    assert await notes.find_one({"recipient": "household/h-1", "tags": "a"}) is not None
    await notes.replace_one({"_id": "n7"}, {"recipient": "household/h-9", "seq": 7})
    assert [d["_id"] for d in await notes.find({"recipient": "household/h-9"}).to_list()] == ["n7"]
    assert await notes.delete_one({"_id": "n7"}) and await notes.find_one({"_id": "n7"}) is None


async def test_a_newest_first_page_is_the_page_mongodb_would_give(db: Any) -> None:
    # Ordering and limits are pushed down where the filter is (deploy/ferretdb/patches.json):
    # the page must be the same as sorting everything, for dates, strings, missing values.
    orders = db["orders"]
    await orders.create_index([("community_id", 1), ("status", 1)])
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    docs = [
        {
            "_id": f"o{i}",
            "community_id": "datong" if i % 4 else "other",
            "status": ("placed", "delivered")[i % 2],
            "grid_id": f"g{i % 7}",
            "placed_at": t0.replace(minute=(i * 37) % 60, second=i % 60),
            "seq": f"{(i * 7919) % 1000:05d}",
        }
        for i in range(60)
    ]
    docs.append({"_id": "no-date", "community_id": "datong", "status": "placed"})
    await orders.insert_many(docs)

    def expected(match: Any, key: str, direction: int, limit: int) -> list[str]:
        chosen = [d for d in docs if match(d)]
        with_key = sorted((d for d in chosen if key in d), key=lambda d: d[key])
        without = [d for d in chosen if key not in d]
        ordered = without + with_key if direction == 1 else with_key[::-1] + without
        return [d["_id"] for d in ordered][:limit]

    cases = [
        ({"community_id": "datong"}, lambda d: d["community_id"] == "datong"),
        (
            {"community_id": "datong", "status": "placed"},
            lambda d: d["community_id"] == "datong" and d["status"] == "placed",
        ),
        (  # grid_id is not indexed: filtered after, so nothing is limited before
            {"community_id": "datong", "grid_id": "g3"},
            lambda d: d["community_id"] == "datong" and d.get("grid_id") == "g3",
        ),
    ]
    # Both fields of a compound index are searched with it.
    both = await plan(db, "orders", {"community_id": "datong", "status": "placed"})
    assert "SCAN orders" not in both and "COLLSCAN" not in both, both
    for query, match in cases:
        for key in ("placed_at", "seq"):
            for direction in (1, -1):
                got = await orders.find(query).sort(key, direction).limit(7).to_list()
                # Ties cannot happen here: every key value is distinct.
                want = expected(match, key, direction, 7)
                assert [d["_id"] for d in got] == want, (query, key, direction)


async def test_a_bulk_of_hundreds_of_replaces_finishes_and_the_server_still_answers(
    db: Any,
) -> None:
    # FerretDB kept each statement's query (and its SQLite connection, of a pool of 100)
    # until the whole update command was done, and began each write on another: a bulk of
    # more than ~100 replaces waited for a connection it held itself, for ever, and every
    # command behind it (an owner's entry with that many changed documents writes such a
    # bulk). It must finish, and the server still answer.
    tasks = db["tasks"]
    await tasks.insert_many([{"_id": f"t{i}", "n": 0} for i in range(300)])
    replaces = [ReplaceOne({"_id": f"t{i}"}, {"n": 1}, upsert=True) for i in range(300)]
    done = await asyncio.wait_for(tasks.bulk_write(replaces, ordered=True), timeout=120)
    assert done.matched_count == 300
    assert await tasks.count_documents({"n": 1}) == 300
    await asyncio.wait_for(mongo.ping(db), timeout=10)
