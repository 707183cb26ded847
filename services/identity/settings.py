from __future__ import annotations

from pathlib import Path

from pydantic import Field, PrivateAttr, model_validator

from shared.keys import KeyRefused, SigningKey
from shared.settings import ServiceSettings

WEAK_SECRETS = {"change-me", "secret", "password", "doorstep", "development"}


class IdentitySettings(ServiceSettings):
    port: int = Field(default=8006, ge=1, le=65535, description="HTTP port")
    mongo_database: str = Field(default="identity", min_length=1, description="Database name")
    environment: str = Field(
        default="production",
        pattern=r"^(production|development)$",
        description="development: a key file others may read is accepted (make run, tests)",
    )
    signing_keys: str = Field(
        min_length=1,
        description="Ed25519 private keys (PEM files), comma-separated: the first signs, all "
        "are published (rotation: add the new one last, then move it first, then drop the old)",
    )
    identity_secret: str = Field(
        min_length=32,
        description="Makes one-time codes and refresh tokens (HMAC); held by identity alone",
    )
    gateway_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="The SMS gateway codes are texted through (notify's); unset: codes are "
        "only logged, in development",
    )
    codes_per_hour: int = Field(default=5, ge=1, le=100, description="Codes one phone may ask")
    codes_per_address_hour: int = Field(
        default=30, ge=1, le=100_000, description="Codes one source address may ask per hour"
    )
    _keys: tuple[SigningKey, ...] = PrivateAttr(default=())

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        return self._keys

    @model_validator(mode="after")
    def keys_that_may_sign(self) -> IdentitySettings:
        development = self.environment == "development"
        if not development and (
            self.identity_secret.lower().strip("-_ ") in WEAK_SECRETS
            or len(set(self.identity_secret)) < 10
        ):
            raise ValueError("DOORSTEP_IDENTITY_SECRET is a default or weak secret")
        try:
            keys = tuple(
                SigningKey.load(Path(p.strip()), private_file=not development)
                for p in self.signing_keys.split(",")
                if p.strip()
            )
        except KeyRefused as exc:
            raise ValueError(f"DOORSTEP_SIGNING_KEYS: {exc}") from exc
        if not keys:
            raise ValueError("DOORSTEP_SIGNING_KEYS: no key file named")
        self._keys = keys
        return self
