"""MongoDB access through PyMongo's native async API (``AsyncMongoClient``; Motor is
deprecated). Works the same against FerretDB v1 and MongoDB 7.
"""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase


def connect(url: str, app_name: str) -> AsyncMongoClient[dict[str, Any]]:
    # The client connects lazily, so a database that is down at start-up does not stop the
    # service; short timeouts keep /readyz and request handling from hanging on it.
    return AsyncMongoClient(
        url,
        appname=app_name,
        serverSelectionTimeoutMS=3000,
        connectTimeoutMS=2000,
        tz_aware=True,
    )


async def ping(db: AsyncDatabase[dict[str, Any]]) -> None:
    await db.command("ping")
