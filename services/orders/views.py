"""How orders and households look to clients (the read side; the rules put the documents)."""

from __future__ import annotations

from typing import Any

from fastapi.encoders import jsonable_encoder


def order_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k != "address_key"}
    view["order_id"] = view.pop("_id")
    return jsonable_encoder(view)  # type: ignore[no-any-return]  # datetimes at any depth


def household_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k != "address_key"}
    view["household_id"] = view.pop("_id")
    return jsonable_encoder(view)  # type: ignore[no-any-return]
