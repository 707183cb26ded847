"""Event handlers of the dispatch service: one explicit table from payload type to function."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from shared.events import Event

HANDLERS: dict[type[Any], Callable[[Event], Awaitable[None]]] = {}
