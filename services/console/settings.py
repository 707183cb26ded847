from __future__ import annotations

from pydantic import Field

from shared.settings import FrontEndSettings


class ConsoleSettings(FrontEndSettings):
    port: int = Field(default=8005, ge=1, le=65535, description="HTTP port")
