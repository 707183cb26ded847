from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared import mongo
from tests.conftest import Stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture()
async def db(stack: Stack, unique: str) -> AsyncIterator[Any]:
    """A database of the test's own on the real server, dropped after it."""
    client = mongo.connect(stack.mongo_url, "tests")
    try:
        database = client[f"t_{unique}"]
        yield database
        await client.drop_database(database.name)
    finally:
        await client.close()
