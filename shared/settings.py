"""Settings every service shares, read from DOORSTEP_* environment variables.

A missing or malformed setting stops the process at once with one line naming the
variable (see ``load``), rather than a traceback or a half-started service.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import TypeVar

from pydantic import Field, FilePath, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "DOORSTEP_"


class CommonSettings(BaseSettings):
    """What every process reads, the console included."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        description="Kafka bootstrap servers, host:port[,host:port]", min_length=3
    )
    jwks_url: str = Field(
        default="http://127.0.0.1:8006/.well-known/jwks.json",
        pattern=r"^https?://",
        description="The identity service's public keys (JWKS): tokens are checked with them",
    )
    jwks_refresh_seconds: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="How often the JWKS is read again (a retired key is dropped by then)",
    )
    host: str = Field(default="127.0.0.1", description="HTTP listen address")
    trusted_proxies: str = Field(
        default="127.0.0.1,::1",
        min_length=1,
        description="Hosts or networks (comma-separated; CIDR allowed) whose X-Forwarded-For "
        "names the client: a reverse proxy in front of a service, the web front ends in front "
        "of identity (its limit of codes per address counts the person, not the front end)",
    )
    log_level: str = Field(
        default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Log level"
    )
    log_json: bool = Field(default=False, description="Log JSON lines instead of console text")

    @field_validator("trusted_proxies")
    @classmethod
    def addresses_or_networks(cls, value: str) -> str:
        for entry in (e.strip() for e in value.split(",")):
            if entry != "*":
                try:
                    ipaddress.ip_network(entry)
                except ValueError:
                    raise ValueError(f"{entry!r} is not an address or a network") from None
        return value


class ServiceSettings(CommonSettings):
    """The services that own a database."""

    mongo_url: str = Field(description="MongoDB connection URL", pattern=r"^mongodb(\+srv)?://")
    topic_partitions: int = Field(
        default=12,
        ge=1,
        le=1000,
        description="Partitions per topic when a service creates it; caps dispatch instances",
    )
    topic_replication: int = Field(
        default=1,
        ge=1,
        le=5,
        description="Copies of each topic when a service creates it: 3 on a three-broker "
        "cluster (writes wait for two, the brokers' min.insync.replicas)",
    )


S = TypeVar("S", bound=BaseSettings)


def load(settings_cls: type[S], service: str) -> S:
    """Build settings or exit with one line per bad variable."""
    try:
        return settings_cls()
    except ValidationError as exc:
        prefix = settings_cls.model_config.get("env_prefix", "")
        lines = [
            f"{service}: configuration error: {prefix}{str(err['loc'][0]).upper()}: {err['msg']}"
            if err["loc"]
            else f"{service}: configuration error: {err['msg']}"  # a check across settings
            for err in exc.errors()
        ]
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


class FrontEndSettings(CommonSettings):
    """A web front end (the console, the phone app): no database, no rules; it signs
    people in through identity and calls the services with their token."""

    orders_url: str = Field(default="http://127.0.0.1:8001", pattern=r"^https?://")
    volunteers_url: str = Field(default="http://127.0.0.1:8002", pattern=r"^https?://")
    dispatch_url: str = Field(default="http://127.0.0.1:8003", pattern=r"^https?://")
    notify_url: str = Field(default="http://127.0.0.1:8004", pattern=r"^https?://")
    identity_url: str = Field(
        default="http://127.0.0.1:8006", pattern=r"^https?://", description="Sign-in"
    )
    district_url: str = Field(default="http://127.0.0.1:8008", pattern=r"^https?://")
    cookie_secure: bool = Field(
        default=False, description="Send the session cookies over HTTPS only (set behind TLS)"
    )
    # Phones reach the app over the LAN: a service worker and the camera need HTTPS there
    # (only localhost is exempt). Serve TLS here, or put a proxy that does in front.
    tls_cert_file: FilePath | None = Field(
        default=None, description="Serve HTTPS with this certificate (PEM; with its key file)"
    )
    tls_key_file: FilePath | None = Field(
        default=None, description="The certificate's private key (PEM)"
    )

    @model_validator(mode="after")
    def tls_whole(self) -> FrontEndSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "DOORSTEP_TLS_CERT_FILE and DOORSTEP_TLS_KEY_FILE go together: set both, or neither"
            )
        return self

    def tls(self) -> tuple[Path | None, Path | None]:
        """The certificate and key to serve HTTPS with; (None, None) for plain HTTP."""
        return self.tls_cert_file, self.tls_key_file

    def secure_cookies(self) -> bool:
        return self.cookie_secure or self.tls_cert_file is not None

    def urls(self) -> dict[str, str]:
        return {
            "orders": self.orders_url,
            "volunteers": self.volunteers_url,
            "dispatch": self.dispatch_url,
            "notify": self.notify_url,
            "district": self.district_url,
        }
