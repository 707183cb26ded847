"""The one error type routes raise for the client to act on (rendered by ``shared.http``)."""

from __future__ import annotations

from typing import Any


class Problem(Exception):
    """An error the client can act on, rendered as RFC 9457 problem details."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.headers = headers or {}
        self.extra = extra


PROBLEM_JSON = "application/problem+json"


def problem_body(
    path: str,
    status: int,
    title: str,
    detail: str | None = None,
    kind: str = "about:blank",
    **extra: Any,
) -> dict[str, Any]:
    """RFC 9457 problem details, as every error of every service is rendered."""
    body: dict[str, Any] = {
        "type": kind if kind == "about:blank" else f"https://doorstep.dev/problems/{kind}",
        "title": title,
        "status": status,
        "instance": path,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    return body
