from __future__ import annotations

import re
import unicodedata

from pydantic import BaseModel, ConfigDict

PHONE = re.compile(r"^\+?[0-9]{7,15}$")


def normalise_phone(raw: str) -> str:
    """A phone as stored and shown: full-width digits made plain, spaces, dashes and
    brackets dropped ('１３９ 1234-5678'), and a mainland mobile without its country code
    ('+86 139…', '0086 139…' → '139…'), so one phone is one string everywhere."""
    text = re.sub(r"[\s()-]", "", unicodedata.normalize("NFKC", raw))
    for prefix in ("+86", "0086"):
        rest = text.removeprefix(prefix)
        if rest != text and len(rest) == 11 and rest.startswith("1"):
            return rest
    return text


class Payload(BaseModel):
    """Base of every event payload. ``type`` (a Literal per subclass) is the discriminator."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
