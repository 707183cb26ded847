"""The audit trail: who did what and when, derived from the owners' log.

Every log entry names the commands it decided (who sent them, about what, and the answer)
and the events it published. From each entry the owner derives one ``audit`` document
per command and per event, keyed by the entry and its place in it, so deriving an entry
again writes nothing new. The trail of an order, household or volunteer is those
documents by subject, oldest first. Like every read model it can be rebuilt from the log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pymongo.asynchronous.database import AsyncDatabase

from shared.auth import Principal, StaffOrOps
from shared.commands import Outcome
from shared.contracts.base import Payload

AUDIT = "audit"
SUBJECT = r"^(order|household|volunteer|campaign|account)/[A-Za-z0-9._:-]{1,100}$"
# What a step of the trail shows besides its type: the fields that say what happened.
DETAIL_FIELDS = (
    "status",
    "reason",
    "priority",
    "volunteer_id",
    "volunteer_name",
    "grid_id",
    "category",
    "attempt",
    "failure_reason",
    "by_role",
    "note",
    "outcome",
    "not_reached",
)


def subject_of(payload: Payload, outcome: Outcome | None = None) -> str | None:
    """The order, volunteer or household a payload is about; a command that made an order
    (placing one names only the household) is about the order its answer names."""
    order = getattr(payload, "order", None)
    if order is not None:
        return f"order/{order.order_id}"
    body = outcome.body if outcome is not None and outcome.body else {}
    for name, prefix in (("order_id", "order"), ("volunteer_id", "volunteer")):
        value = getattr(payload, name, None) or body.get(name)
        if isinstance(value, str):
            return f"{prefix}/{value}"
    for name, prefix in (
        ("household_id", "household"),
        ("campaign_id", "campaign"),
        ("account", "account"),
    ):
        value = getattr(payload, name, None)
        if isinstance(value, str):
            return f"{prefix}/{value}"
    return None


def command_step(payload: Payload, outcome: Outcome | None) -> dict[str, Any]:
    """What a log entry keeps of a decided command for the trail."""
    actor = getattr(payload, "actor", None) or getattr(payload, "volunteer_id", None)
    return {
        "type": payload.type,  # type: ignore[attr-defined]
        "subject": subject_of(payload, outcome),
        "actor": actor or "timer",
        "status": outcome.status if outcome is not None else None,
        "detail": outcome.detail if outcome is not None else None,
    }


def trail_of(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The audit documents an entry gives (pure; ids stable so a redo inserts nothing)."""
    base = {"community_id": entry["community_id"], "at": entry["at"], "entry": entry["n"]}
    docs = [
        {**base, "_id": f"{entry['_id']}:c{i}", "kind": "command", **step}
        for i, step in enumerate(entry.get("commands", []))
        if step.get("subject")
    ]
    for i, event in enumerate(entry["events"]):
        if not event.get("subject"):
            continue
        data = event.get("data", {})
        docs.append(
            {
                **base,
                "_id": f"{entry['_id']}:e{i}",
                "kind": "event",
                "type": data.get("type", event.get("type")),
                "subject": event["subject"],
                "actor": event.get("source", "").strip("/"),
                "detail": {k: data[k] for k in DETAIL_FIELDS if data.get(k) is not None},
            }
        )
    return docs


def step_view(doc: dict[str, Any]) -> dict[str, Any]:
    at: datetime = doc["at"]
    return {
        "at": at.isoformat(),
        "kind": doc["kind"],
        "type": doc["type"],
        "actor": doc["actor"],
        "status": doc.get("status"),
        "detail": doc.get("detail"),
        "entry": doc["entry"],
    }


async def trail(
    db: AsyncDatabase[dict[str, Any]], principal: Principal, subject: str, limit: int
) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"subject": subject}
    docs = await db[AUDIT].find(query).limit(limit).to_list()
    # Someone else's community's subject reads as nothing at all: its existence is private.
    seen = [d for d in docs if principal.may_see_community(d["community_id"])]
    return [step_view(d) for d in sorted(seen, key=lambda d: (d["at"], d["_id"]))]


def audit_router() -> APIRouter:
    """GET /v1/audit?subject=order/{id}: this service's part of the trail (staff, ops)."""
    router = APIRouter(prefix="/v1", tags=["audit"])

    @router.get("/audit", summary="Who did what and when to an order, household or volunteer")
    async def audit(
        request: Request,
        principal: StaffOrOps,
        subject: Annotated[str, Query(pattern=SUBJECT)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    ) -> dict[str, Any]:
        # Nothing known (or not theirs to see) is an empty trail: it says nothing either way.
        steps = await trail(request.app.state.runtime.db, principal, subject, limit)
        return {"subject": subject, "steps": steps}

    return router
