"""Documents through the real MongoDB-protocol server (FerretDB here, mongo:7 in Docker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pymongo.errors import DuplicateKeyError

from shared import mongo
from tests.conftest import Stack


async def test_documents_round_trip_and_a_unique_index_rejects_a_duplicate(
    stack: Stack, unique: str
) -> None:
    client = mongo.connect(stack.mongo_url, "tests")
    try:
        db = client[f"t_{unique}"]
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
        await client.drop_database(db.name)
    finally:
        await client.close()
