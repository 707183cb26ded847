"""Composition root of the notify service: settings, clients, consumers, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from services.notify import api, inbound
from services.notify.handlers import NotifyOwner
from services.notify.inbound import KeypadReplies
from services.notify.live import LiveFeed
from services.notify.settings import NotifySettings
from shared.commands import CommandSender, listen_for_outcomes
from shared.gateway import WebhookGateway
from shared.http import service_app
from shared.runtime import ServiceRuntime
from shared.topics import DISPATCH_COMMANDS, DISPATCH_EVENTS, ORDERS_EVENTS, VOLUNTEERS_EVENTS

SERVICE = "notify"
DESCRIPTION = "Notifications for residents, volunteers and staff: inbox, live stream, call list."


def create_app(settings: NotifySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime(settings, SERVICE, settings.mongo_database)
        gateway = WebhookGateway(settings.gateway_url) if settings.gateway_url else None
        feed = LiveFeed(per_recipient=settings.streams_per_inbox)
        owner = NotifyOwner(runtime.db, gateway, feed)
        runtime.loop("indexes", owner.ensure_indexes)
        if settings.stream_poll_seconds > 0:  # 0: the only notify instance, nobody to tail
            runtime.loop(
                "live-tail", lambda: feed.tail(owner.notifications, settings.stream_poll_seconds)
            )
        runtime.consume(
            SERVICE,
            [ORDERS_EVENTS, VOLUNTEERS_EVENTS, DISPATCH_EVENTS],
            owner.handle,
            batch_handler=lambda inputs: owner.handle_batch([i.event for i in inputs]),
        )
        # Keypad replies become a cadre's answers to dispatch, answered like any request.
        dispatch = CommandSender(runtime.db, runtime.publisher, DISPATCH_COMMANDS, f"/{SERVICE}")

        async def outcomes() -> None:
            await runtime.topics_ready.wait()
            await listen_for_outcomes(settings.kafka_bootstrap)

        if settings.sms_secret:
            runtime.loop("outcomes", outcomes)
        runtime.loop(
            "night-alarms",
            lambda: owner.wake_on_call(
                timedelta(seconds=settings.alarm_repeat_seconds), settings.alarm_tries
            ),
        )
        runtime.loop("sequence", owner.continue_sequence)  # after the newest stored seq
        if gateway is not None:
            runtime.loop("requeue", owner.requeue_unsent)
            runtime.loop("outbound", owner.send_outgoing)
        async with runtime:
            app.state.runtime = runtime
            app.state.readiness = runtime.readiness
            app.state.keys = runtime.keys
            app.state.feed = feed
            app.state.sms_secret = settings.sms_secret
            app.state.keypad = KeypadReplies(runtime.db, dispatch, owner)
            app.state.owner = owner
            yield
        if gateway is not None:
            await gateway.close()

    app = service_app(SERVICE, lifespan, description=DESCRIPTION)
    app.include_router(api.router)
    app.include_router(inbound.router)
    return app
