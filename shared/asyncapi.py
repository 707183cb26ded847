"""The event contracts as an AsyncAPI 3.0 document, made from the contracts themselves:
every topic, its key, and each message's CloudEvents type and JSON Schema. A team that
consumes Doorstep's events (a district's data platform) reads them from this standard
document, served by every service at ``/asyncapi.json`` beside its OpenAPI."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter

from shared.contracts import campaigns, dispatch, identity, orders, supply, volunteers
from shared.contracts.base import Payload
from shared.topics import (
    DISPATCH_COMMANDS,
    DISPATCH_EVENTS,
    IDENTITY_COMMANDS,
    IDENTITY_EVENTS,
    ORDERS_COMMANDS,
    ORDERS_EVENTS,
    VOLUNTEERS_COMMANDS,
    VOLUNTEERS_EVENTS,
)

# Which messages travel on which topic, and what the record key is.
TOPICS: dict[str, tuple[str, tuple[type[Payload], ...]]] = {
    ORDERS_COMMANDS: ("community id", orders.COMMANDS + campaigns.COMMANDS + supply.COMMANDS),
    ORDERS_EVENTS: ("community id", orders.EVENTS + campaigns.EVENTS + supply.EVENTS),
    VOLUNTEERS_COMMANDS: ("community id", volunteers.COMMANDS),
    VOLUNTEERS_EVENTS: ("community id", volunteers.EVENTS),
    DISPATCH_COMMANDS: ("community id", dispatch.COMMANDS),
    DISPATCH_EVENTS: ("community id", dispatch.EVENTS),
    IDENTITY_COMMANDS: ("account (a phone's digits)", identity.COMMANDS),
    IDENTITY_EVENTS: ("account (a phone's digits)", identity.EVENTS),
}


def message_name(payload: type[Payload]) -> str:
    return str(payload.model_fields["type"].default)


@cache
def document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for topic, (key, payloads) in TOPICS.items():
        channel = topic.replace(".", "_")
        refs = {}
        for payload in payloads:
            name = message_name(payload)
            ref = name.replace(".", "_")
            schema = payload.model_json_schema(ref_template="#/components/schemas/{model}")
            for sub, sub_schema in schema.pop("$defs", {}).items():
                schemas[sub] = sub_schema
            schemas[payload.__name__] = schema
            messages[ref] = {
                "name": name,
                "title": payload.__name__,
                "summary": (payload.__doc__ or "").strip().split("\n\n")[0] or name,
                "contentType": "application/json",
                "headers": {
                    "type": "object",
                    "description": "CloudEvents Kafka binding (binary mode): ce_* headers",
                    "properties": {
                        "ce_type": {"const": name},
                        "ce_id": {"type": "string"},
                        "ce_source": {"type": "string"},
                        "ce_specversion": {"const": "1.0"},
                        "ce_partitionkey": {"type": "string"},
                    },
                },
                "payload": {"$ref": f"#/components/schemas/{payload.__name__}"},
            }
            refs[ref] = {"$ref": f"#/components/messages/{ref}"}
        channels[channel] = {
            "address": topic,
            "description": f"Kafka topic {topic}; record key: the {key}.",
            "messages": refs,
            "bindings": {"kafka": {"topic": topic, "bindingVersion": "0.5.0"}},
        }
        operations[f"publish_{channel}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{r}"} for r in refs],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Doorstep events",
            "version": "1",
            "description": "Commands and events between Doorstep's services, as CloudEvents "
            "on Kafka. A consumer skips a type or version it does not know yet.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def asyncapi_router() -> APIRouter:
    router = APIRouter()

    @router.get("/asyncapi.json", tags=["ops"], summary="The event contracts (AsyncAPI 3.0)")
    async def asyncapi() -> dict[str, Any]:
        return document()

    return router
