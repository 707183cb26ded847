"""The outbound channel (notify's texts, identity's sign-in codes): a small interface and
its one real implementation, an HTTP webhook to the SMS/push gateway, with retries."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import httpx


class DeliveryFailed(Exception):
    pass


class Gateway(Protocol):
    async def send(self, message: dict[str, Any]) -> None: ...


class WebhookGateway:
    """POSTs each notification as JSON; 2xx is delivered, 4xx is final, the rest retried."""

    def __init__(self, url: str, attempts: int = 4, backoff: float = 0.5, timeout: float = 5.0):
        self.url = url
        self.attempts = attempts
        self.backoff = backoff
        self._client = httpx.AsyncClient(timeout=timeout)

    async def send(self, message: dict[str, Any]) -> None:
        delay = self.backoff
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self._client.post(
                    self.url, json=message, headers={"Idempotency-Key": message["id"]}
                )
                if response.is_success:
                    return
                last = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code != 429:
                    break  # the gateway refuses this message; retrying will not help
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay *= 2
        raise DeliveryFailed(last)

    async def close(self) -> None:
        await self._client.aclose()
