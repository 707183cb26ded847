"""What an owner answers a command: pure, so the rules and the decision step need no web
framework or broker to say it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from shared.problem import Problem


class Outcome(BaseModel):
    """What the owner decided: an HTTP status and a JSON body (or problem details)."""

    status: int
    body: dict[str, Any] | None = None
    title: str | None = None
    detail: str | None = None

    @classmethod
    def ok(cls, body: dict[str, Any], status: int = 200) -> Outcome:
        # JSON-safe once, here: the body is stored and later sent as it is.
        return cls(status=status, body=to_jsonable_python(body))

    @classmethod
    def rejected(cls, status: int, title: str, detail: str) -> Outcome:
        return cls(status=status, title=title, detail=detail)

    def unwrap(self) -> dict[str, Any]:
        """The body, or raise the rejection as problem details."""
        if self.status >= 400:
            raise Problem(self.status, self.title or "Rejected", self.detail)
        return self.body or {}
