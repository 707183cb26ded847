from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Payload(BaseModel):
    """Base of every event payload. ``type`` (a Literal per subclass) is the discriminator."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
