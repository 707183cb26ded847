"""The outbox inside the write: events ride in the ``outbox`` array of the document whose
state changed, added in the same single-document write, and are published right after by
the same (single) writer. A crash between the write and the publish leaves them in the
document; the command or event that caused the write is then re-delivered (it was not
committed), and the handler's flush publishes them. Event ids are fixed when the events
are written, so a re-publish carries the same id and consumers drop it.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from shared.events import Event
from shared.kafka import EventPublisher


def entries(*events: Event) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json") for e in events]


async def flush(
    collection: AsyncCollection[dict[str, Any]],
    doc_id: Any,
    publisher: EventPublisher,
    topic: str,
) -> list[Event]:
    doc = await collection.find_one({"_id": doc_id}, {"outbox": 1})
    pending = [Event.model_validate(e) for e in (doc or {}).get("outbox") or []]
    if not pending:
        return []
    await publisher.publish_many(topic, pending)
    # Only this writer touches the document, so nothing was added since the read above.
    await collection.update_one({"_id": doc_id}, {"$set": {"outbox": []}})
    return pending
