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
from shared.trail import command_step, subject_of, trail_of

AUDIT = "audit"
__all__ = ["AUDIT", "audit_router", "command_step", "subject_of", "trail_of"]
SUBJECT = r"^(order|household|volunteer|campaign|account)/[A-Za-z0-9._:-]{1,100}$"


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
