from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from services.orders import cards
from shared.settings import ServiceSettings


class OrdersSettings(ServiceSettings):
    port: int = Field(default=8001, ge=1, le=65535, description="HTTP port")
    mongo_database: str = Field(default="orders", min_length=1, description="Database name")
    card_url: str = Field(
        default="http://127.0.0.1:8005/card",
        pattern=r"^https?://",
        description="What a contact card's QR code opens: this URL and the card code",
    )
    card_font: Path | None = Field(
        default=None,
        description="A Chinese TrueType font (.ttf/.ttc) for contact cards; "
        "default: WenQuanYi Micro Hei or the Noto Sans SC the setup caches",
    )

    @model_validator(mode="after")
    def a_font_for_cards(self) -> OrdersSettings:
        # Cards are for people who read Chinese: without a font they print boxes. Found now,
        # at start, not when staff print 1,500 cards.
        try:
            cards.find_font(self.card_font)
        except cards.FontMissing as exc:
            raise ValueError(str(exc)) from None
        return self
