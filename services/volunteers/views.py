"""How a volunteer looks to clients (the read side; the rules put the documents)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python

from services.volunteers import domain


def volunteer_view(doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k != "_n"}  # the read model's version: internal
    view["volunteer_id"] = view.pop("volunteer_id", None) or view["_id"]  # bare: stored before
    del view["_id"]
    shift = doc.get("shift")
    view["on_duty"] = shift is not None
    view["hours_worked"] = domain.hours_worked(doc.get("worked_seconds", 0.0), shift, now)
    view["hours_by_day"] = domain.hours_by_day(view.pop("worked_by_day", {}), shift, now)
    return to_jsonable_python(view)  # type: ignore[no-any-return]
