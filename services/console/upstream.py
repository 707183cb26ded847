"""The other services' HTTP APIs, called for the person signed in. The console owns no
business rule and no database: what it shows it reads here, what it does it asks here."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from services.console.session import Person
from shared import refusals, trace
from shared.log import get_logger

log = get_logger(__name__)


class Refused(Exception):
    """A service said no (4xx): its reason is shown to the person, in their words
    (``shared.refusals``: the title's meaning in Chinese, the detail in English)."""

    def __init__(self, status: int, detail: str, title: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title

    def said(self, lang: str) -> str:
        return refusals.said(self.title, self.status, self.detail, lang)


class Unavailable(Exception):
    """A service did not answer (down, 5xx, or 503 while its database is away)."""


class Queued(Exception):
    """A request was taken but not decided within the wait (202): it will be."""


class Upstream:
    def __init__(self, urls: dict[str, str]) -> None:
        self._urls = urls
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=3.0))

    async def close(self) -> None:
        await self._client.aclose()

    async def call(self, person: Person, method: str, service: str, path: str, **kw: Any) -> Any:
        return (await self.fetch(person, method, service, path, **kw)).json()

    async def fetch(
        self, person: Person, method: str, service: str, path: str, **kw: Any
    ) -> httpx.Response:
        # The person's own token: the services enforce their role and grid themselves.
        headers = {"Authorization": f"Bearer {person.token}"}
        if correlation := trace.current():  # the page's request, followed on
            headers["X-Correlation-ID"] = correlation
        headers |= kw.pop("headers", {})
        try:
            response = await self._client.request(
                method, f"{self._urls[service]}{path}", headers=headers, **kw
            )
        except httpx.HTTPError as exc:
            log.warning("console.upstream_unreachable", service=service, error=repr(exc))
            raise Unavailable(service) from exc
        if response.status_code == 202:
            raise Queued(service)
        if response.status_code >= 500:
            raise Unavailable(service)
        if response.status_code >= 400:
            title = None
            try:
                body = response.json()
                title = body.get("title")
                detail = body.get("detail") or body.get("title") or response.reason_phrase
                fields = [f"{e['field']}: {e['message']}" for e in body.get("errors", [])]
                if fields:  # which field, and why: what the person can put right
                    detail = "; ".join(fields)
            except ValueError:
                detail = response.reason_phrase
            raise Refused(response.status_code, str(detail), title)
        return response

    async def get(self, person: Person, service: str, path: str, **params: Any) -> Any:
        return await self.call(person, "GET", service, path, params=params or None)

    async def post(self, person: Person, service: str, path: str, **kw: Any) -> Any:
        return await self.call(person, "POST", service, path, **kw)

    async def gather(self, *calls: Any) -> list[Any]:
        return list(await asyncio.gather(*calls))

    async def ready(self) -> None:
        """The console is ready when every service it calls is."""
        for service, url in self._urls.items():
            response = await self._client.get(f"{url}/readyz", timeout=3.0)
            if response.status_code != 200:
                raise RuntimeError(f"{service} not ready")
