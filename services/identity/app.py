"""Composition root of the identity service: sign-in by phone, sessions, and the keys.

Why a service of its own: it is the one process that holds private keys and the secret
codes and refresh tokens are made with, so nothing else needs them; its state (codes,
tries, sessions) is per phone, not per community, and changes on every sign-in and
refresh, which on FerretDB (no transactions, no atomic read-modify-write) needs one writer
per phone: the same owner shell as every other service, keyed by phone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.identity import api
from services.identity.directory import Directory
from services.identity.handlers import IdentityRules
from services.identity.settings import IdentitySettings
from services.identity.sms import CodeSender
from shared.audit import audit_router
from shared.commands import CommandSender, commands_router
from shared.gateway import WebhookGateway
from shared.http import service_app
from shared.keys import KeyRing
from shared.runtime import ServiceRuntime
from shared.topics import IDENTITY_COMMANDS, IDENTITY_EVENTS, ORDERS_EVENTS, VOLUNTEERS_EVENTS

SERVICE = "identity"
DESCRIPTION = "Sign-in by phone and one-time code; sessions; the keys tokens are signed with."


def create_app(settings: IdentitySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys = KeyRing.of(*settings.keys)  # its own public keys: nothing to fetch
        runtime = ServiceRuntime(settings, SERVICE, settings.mongo_database, keys=keys)
        runtime.own(
            IdentityRules(settings.identity_secret, settings.codes_per_hour), [IDENTITY_COMMANDS]
        )
        directory = Directory(runtime.db)
        runtime.consume(
            f"{SERVICE}-directory", [ORDERS_EVENTS, VOLUNTEERS_EVENTS], directory.handle
        )
        gateway = WebhookGateway(settings.gateway_url) if settings.gateway_url else None
        sender = CodeSender(settings.identity_secret, gateway)
        runtime.consume(f"{SERVICE}-sms", [IDENTITY_EVENTS], sender.handle)

        async def ensure_indexes() -> None:
            await runtime.db[api.REQUESTS].create_index([("ip", 1), ("at", 1)])
            await directory.ensure_indexes()

        async def forget_old_requests() -> None:
            # FerretDB v1 has no TTL indexes: the requests past the hour the limit counts
            # are deleted here (by any instance; deleting twice is harmless).
            while True:
                await api.forget_old_requests(runtime.db)
                await asyncio.sleep(600)

        runtime.loop("indexes", ensure_indexes)
        runtime.loop("forget-old-requests", forget_old_requests)
        async with runtime:
            app.state.runtime = runtime
            app.state.readiness = runtime.readiness
            app.state.keys = keys
            app.state.signing_key = settings.keys[0]
            app.state.published_keys = settings.keys
            app.state.identity_secret = settings.identity_secret
            app.state.directory = directory
            app.state.codes_per_address_hour = settings.codes_per_address_hour
            app.state.commands = CommandSender(
                runtime.db, runtime.publisher, IDENTITY_COMMANDS, f"/{SERVICE}"
            )
            yield
        if gateway is not None:
            await gateway.close()

    app = service_app(SERVICE, lifespan, description=DESCRIPTION)
    app.include_router(api.public)
    app.include_router(api.router)
    app.include_router(api.keys_router)
    app.include_router(commands_router())
    app.include_router(audit_router())
    return app
