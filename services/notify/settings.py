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
        default=1.0,
        ge=0,
        le=10,
        description="How often an instance with live streams open looks for notifications "
        "other notify instances stored (its own are pushed at once); 0 when it is the only one",
    )
    streams_per_inbox: int = Field(
        default=5, ge=1, le=100, description="Live streams one inbox may hold open at once"
    )
    sms_secret: str | None = Field(
        default=None,
        min_length=32,
        description="Shared secret the SMS gateway signs inbound replies with; unset: no inbound",
    )
    alarm_repeat_seconds: float = Field(
        default=180.0, gt=0, le=3600, description="Night alarms: seconds between two pages"
    )
    alarm_tries: int = Field(
        default=3, ge=1, le=20, description="Night alarms: pages to one person before the next"
    )
