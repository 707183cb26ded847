"""MongoDB access through PyMongo's native async API (``AsyncMongoClient``; Motor is
deprecated). Works the same against FerretDB v1 and MongoDB 7.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

DB_COMMANDS = Counter(
    "doorstep_db_commands_total", "Database commands sent (PyMongo command monitoring)", ["command"]
)


class CommandCounter(monitoring.CommandListener):  # type: ignore[misc]
    """Counts every command the driver sends: the benchmark divides them by orders."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        DB_COMMANDS.labels(event.command_name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


def connect(url: str, app_name: str) -> AsyncMongoClient[dict[str, Any]]:
    # The client connects lazily, so a database that is down at start-up does not stop the
    # service; short timeouts keep /readyz and request handling from hanging on it.
    return AsyncMongoClient(
        url,
        appname=app_name,
        serverSelectionTimeoutMS=3000,
        connectTimeoutMS=2000,
        tz_aware=True,
        event_listeners=[CommandCounter()],
    )


async def ping(db: AsyncDatabase[dict[str, Any]]) -> None:
    await db.command("ping")


async def find_in_community(
    collection: AsyncCollection[dict[str, Any]], doc_id: str, community_id: str
) -> dict[str, Any] | None:
    """The document with this id if it belongs to the community.

    Looked up by ``_id`` alone, then checked: FerretDB v1 on SQLite uses the primary key
    only for a filter that is exactly ``{"_id": ...}``, and scans the whole collection
    for anything more (``{"_id": x, "community_id": c}`` included).
    """
    doc = await collection.find_one({"_id": doc_id})
    return doc if doc is not None and doc.get("community_id") == community_id else None


DUPLICATE_KEY = 11000  # the server's code for a document whose _id is there already


async def insert_once(
    collection: AsyncCollection[dict[str, Any]], docs: list[dict[str, Any]]
) -> set[str]:
    """Insert the documents; the ids inserted now (a duplicate id was stored before, or
    earlier in ``docs``: kept as it was). Anything else the database refuses is raised."""
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        there = {e["index"] for e in errors}
        return {d["_id"] for i, d in enumerate(docs) if i not in there}
    return {d["_id"] for d in docs}
