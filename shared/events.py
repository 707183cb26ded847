"""The CloudEvents envelope, and its Kafka binary-mode binding.

Binary mode: attributes travel as ``ce_*`` headers, the payload as JSON in the value, and
the record key is the community id (the ``partitionkey`` extension), so all of one
community's events are ordered and co-partitioned across topics.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Union

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared import trace
from shared.contracts import campaigns, dispatch, identity, orders, supply, volunteers
from shared.contracts.base import Payload

PAYLOAD_TYPES = (
    *orders.PAYLOADS,
    *campaigns.PAYLOADS,
    *supply.PAYLOADS,
    *volunteers.PAYLOADS,
    *dispatch.PAYLOADS,
    *identity.PAYLOADS,
)
EventPayload = Annotated[Union[*PAYLOAD_TYPES], Field(discriminator="type")]  # type: ignore[valid-type]
_payload_adapter: TypeAdapter[Payload] = TypeAdapter(EventPayload)

KNOWN_TYPES = frozenset(p.model_fields["type"].default for p in PAYLOAD_TYPES)


def new_event_id() -> str:
    return str(uuid.uuid4())


class Event(BaseModel):
    """One domain event: CloudEvents attributes plus a typed payload."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_event_id)
    source: str
    community_id: str = Field(min_length=1)
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    correlation_id: str | None = None
    data: EventPayload

    @property
    def type(self) -> str:
        return self.data.type


class UndecodableRecord(ValueError):
    """A Kafka record that is not a valid Doorstep CloudEvent (goes to the DLQ)."""


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def to_record(event: Event) -> Record:
    attributes: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": event.time,
        "datacontenttype": "application/json",
        "partitionkey": event.community_id,
    }
    if event.subject:
        attributes["subject"] = event.subject
    if event.correlation_id:
        attributes["correlationid"] = event.correlation_id
        if parent := trace.traceparent(event.correlation_id, event.id):
            attributes["traceparent"] = parent  # CloudEvents' distributed-tracing extension
    data = event.data.model_dump(mode="json", exclude={"type"})
    msg = ce_kafka.to_binary_event(CloudEvent(attributes, data))
    key = msg.key.encode() if isinstance(msg.key, str) else (msg.key or b"")
    return Record(key=key, value=msg.value, headers=sorted(msg.headers.items()))


class UnknownEventType(Exception):
    """A well-formed Doorstep event of a type or version this code does not know yet (a
    producer upgraded before this consumer): not an error of the record."""

    def __init__(self, event_type: str) -> None:
        super().__init__(event_type)
        self.event_type = event_type


def from_record(key: bytes | None, value: bytes | None, headers: Any) -> Event:
    """Parse a binary-mode record; raise UndecodableRecord with the reason if it isn't one,
    UnknownEventType if it is one of a type not known here."""
    try:
        msg = ce_kafka.KafkaMessage(headers=dict(headers or ()), key=key, value=value or b"")
        ce = ce_kafka.from_binary_event(msg)
        if ce.get_type().startswith("doorstep.") and ce.get_type() not in KNOWN_TYPES:
            raise UnknownEventType(ce.get_type())
        data = ce.get_data()
        if not isinstance(data, dict):
            raise UndecodableRecord("data is not a JSON object")
        attrs = ce.get_attributes()
        payload = _payload_adapter.validate_python({**data, "type": ce.get_type()})
        return Event(
            id=ce.get_id(),
            source=ce.get_source(),
            community_id=attrs.get("partitionkey") or "",
            time=ce.get_time() or datetime.now(UTC),
            subject=ce.get_subject(),
            correlation_id=attrs.get("correlationid")
            or trace.trace_id_of(attrs.get("traceparent")),
            data=payload,
        )
    except (UndecodableRecord, UnknownEventType):
        raise
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'type'}: {e['msg'][:120]}" for e in exc.errors()
        )
        raise UndecodableRecord(f"invalid event: {reasons}") from exc
    except Exception as exc:  # the SDK raises assorted errors for bad headers or JSON
        raise UndecodableRecord(f"{type(exc).__name__}: {exc}") from exc
