from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class VolunteersSettings(ServiceSettings):
    port: int = Field(default=8002, ge=1, le=65535, description="HTTP port")
    mongo_database: str = Field(default="volunteers", min_length=1, description="Database name")
    shift_check_seconds: float = Field(
        default=15.0, gt=0, le=3600, description="How often shifts past their end are checked out"
    )
