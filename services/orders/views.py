"""How orders and households look to clients (the read side; the rules put the documents)."""

from __future__ import annotations

from collections.abc import Iterable
from heapq import nlargest
from typing import Any

from pydantic_core import to_jsonable_python


def order_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k != "address_key"}
    view["order_id"] = view.pop("_id")
    return to_jsonable_python(view)  # type: ignore[no-any-return]  # datetimes at any depth (pydantic-core: ten times faster than FastAPI's encoder)


def household_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k != "address_key"}
    view["household_id"] = view.pop("_id")
    return to_jsonable_python(view)  # type: ignore[no-any-return]


def newest_orders(orders: Iterable[dict[str, Any]], query: dict[str, Any], limit: int) -> list[Any]:
    """The newest ``limit`` orders matching ``query`` (field equality), from the owner's
    live documents: staff's list without a database read (FerretDB on SQLite reads and
    sorts every order of the community for a page)."""
    matching = (o for o in orders if all(o.get(k) == v for k, v in query.items()))
    return nlargest(limit, matching, key=lambda o: (o["placed_at"], o["_id"]))
