from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    port: int = Field(default=8004, ge=1, le=65535, description="HTTP port")
    mongo_database: str = Field(default="notify", min_length=1, description="Database name")
    gateway_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="SMS/push gateway webhook; unset: push notifications stay in the inbox",
    )
    stream_poll_seconds: float = Field(
        default=0.5, gt=0, le=10, description="How often the live stream looks for news"
    )
