from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

PHONE = re.compile(r"^\+?[0-9]{7,15}$")


def normalise_phone(raw: str) -> str:
    """Spaces, dashes and brackets as people write them dropped: '139 1234-5678'."""
    return re.sub(r"[\s()-]", "", raw)


class Payload(BaseModel):
    """Base of every event payload. ``type`` (a Literal per subclass) is the discriminator."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
