"""Process entry point shared by the services: settings first, then uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from shared import telemetry
from shared.log import configure
from shared.settings import CommonSettings, FrontEndSettings, load

S = TypeVar("S", bound=CommonSettings)


def serve(service: str, settings_cls: type[S], create_app: Callable[[S], FastAPI]) -> None:
    settings = load(settings_cls, service)  # exits with one line per bad variable
    configure(service, settings.log_level, settings.log_json)
    port: int = getattr(settings, "port")  # noqa: B009 - every service's settings define it
    cert, key = settings.tls() if isinstance(settings, FrontEndSettings) else (None, None)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        forwarded_allow_ips=settings.trusted_proxies,
        ssl_certfile=cert,
        ssl_keyfile=key,
    )
    telemetry.shut_down()  # what is still batched goes out
