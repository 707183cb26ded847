from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class DistrictSettings(ServiceSettings):
    port: int = Field(default=8008, ge=1, le=65535, description="HTTP port")
    mongo_database: str = Field(default="district", min_length=1, description="Database name")
    pace_seconds: float = Field(
        default=1.0,
        ge=0,
        le=30,
        description="Read events at most this often: the view lags by up to this much and "
        "writes one entry per community per batch, not one per event",
    )
