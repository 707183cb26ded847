"""The AsyncAPI document is made from the contracts: every message on its topic, once."""

from __future__ import annotations

from collections import Counter

from fastapi.testclient import TestClient

from shared.asyncapi import document
from shared.events import KNOWN_TYPES
from shared.topics import ALL, OUTCOMES


def test_every_contract_is_a_message_on_exactly_one_topic_with_a_schema() -> None:
    doc = document()
    assert doc["asyncapi"].startswith("3.")
    channels = doc["channels"]
    assert {c["address"] for c in channels.values()} == set(ALL) - {OUTCOMES}
    placed = Counter(
        doc["components"]["messages"][ref.split("/")[-1]]["name"]
        for c in channels.values()
        for ref in (m["$ref"] for m in c["messages"].values())
    )
    assert set(placed) == KNOWN_TYPES and set(placed.values()) == {1}
    schemas = doc["components"]["schemas"]
    for message in doc["components"]["messages"].values():
        assert message["payload"]["$ref"].split("/")[-1] in schemas


def test_every_service_serves_it_beside_its_openapi() -> None:
    from contextlib import asynccontextmanager

    from shared.http import service_app

    @asynccontextmanager
    async def nothing(app: object):  # type: ignore[no-untyped-def]
        yield

    with TestClient(service_app("tests", nothing)) as client:
        served = client.get("/asyncapi.json")
    assert served.status_code == 200 and served.json()["info"]["title"] == "Doorstep events"
