"""How orders and households look to clients (the read side; the rules put the documents)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic_core import to_jsonable_python

INTERNAL = ("address_key", "_n")  # lookups and the read model's version: not for clients


def order_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k not in INTERNAL}
    view["order_id"] = view.pop("_id")
    return to_jsonable_python(view)  # type: ignore[no-any-return]  # datetimes at any depth (pydantic-core: ten times faster than FastAPI's encoder)


def household_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k not in INTERNAL}
    view["household_id"] = view.pop("_id")
    return to_jsonable_python(view)  # type: ignore[no-any-return]


def newest_orders(
    newest_first: Iterable[dict[str, Any]], query: dict[str, Any], limit: int
) -> list[dict[str, Any]]:
    """The first ``limit`` orders matching ``query`` (field equality) of orders given
    newest first: staff's list from the owner's live documents, without a database read
    (FerretDB on SQLite sorts every order of the community for a page)."""
    wanted = tuple(query.items())
    page: list[dict[str, Any]] = []
    for doc in newest_first:
        if all(doc.get(k) == v for k, v in wanted):
            page.append(doc)
            if len(page) == limit:
                break
    return page
