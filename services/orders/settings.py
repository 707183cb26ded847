from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class OrdersSettings(ServiceSettings):
    port: int = Field(default=8001, ge=1, le=65535, description="HTTP port")
    mongo_database: str = Field(default="orders", min_length=1, description="Database name")
    card_url: str = Field(
        default="http://127.0.0.1:8005/card",
        pattern=r"^https?://",
        description="What a contact card's QR code opens: this URL and the card code",
    )
