from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class FieldSettings(CommonSettings):
    port: int = Field(default=8007, ge=1, le=65535, description="HTTP port")
    orders_url: str = Field(default="http://127.0.0.1:8001", pattern=r"^https?://")
    volunteers_url: str = Field(default="http://127.0.0.1:8002", pattern=r"^https?://")
    dispatch_url: str = Field(default="http://127.0.0.1:8003", pattern=r"^https?://")
    notify_url: str = Field(default="http://127.0.0.1:8004", pattern=r"^https?://")
    identity_url: str = Field(
        default="http://127.0.0.1:8006", pattern=r"^https?://", description="Sign-in"
    )
    cookie_secure: bool = Field(
        default=False, description="Send the session cookies over HTTPS only (set behind TLS)"
    )

    def urls(self) -> dict[str, str]:
        return {
            "orders": self.orders_url,
            "volunteers": self.volunteers_url,
            "dispatch": self.dispatch_url,
            "notify": self.notify_url,
        }
