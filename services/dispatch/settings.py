from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class DispatchSettings(ServiceSettings):
    port: int = Field(default=8003, ge=1, le=65535, description="HTTP port")
    mongo_database: str = Field(default="dispatch", min_length=1, description="Database name")
    offer_timeout_seconds: float = Field(
        default=120.0, gt=0, le=3600, description="How long a volunteer has to answer an offer"
    )
    escalate_after_seconds: float = Field(
        default=600.0,
        gt=0,
        le=86400,
        description="An order not taken this long after it was placed goes to its grid worker",
    )
