"""What the audit trail keeps of a decision: pure, so the decision step can say it (see
``shared.audit`` for the trail itself and its route)."""

from __future__ import annotations

from typing import Any

from shared.contracts.base import Payload
from shared.outcome import Outcome

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
    "proof",
    "photo_url",
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
        ("supplier_order_id", "supplier_order"),
        ("supplier_id", "supplier"),
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
