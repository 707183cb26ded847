"""One id follows a request through everything it causes: the correlation id. It is a W3C
trace id (32 lowercase hex), so it travels as ``traceparent`` too — the CloudEvents
distributed-tracing extension on every event (Kafka header ``ce_traceparent``) — and a
tracing system reading either joins the same trace. Pure: no web framework or broker.

A request's id is the caller's ``traceparent`` trace id, else its ``X-Correlation-Id`` if
short and plain, else a new one; the commands a request sends carry it, the owner's events
carry their input's, and so on to the resident's notification."""

from __future__ import annotations

import hashlib
import re
import uuid
from contextvars import ContextVar

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
# A caller's correlation id is kept only if it is short and plain: it goes into every log
# line and back out in a header.
CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

_current: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_id() -> str:
    return uuid.uuid4().hex  # 32 lowercase hex: a valid W3C trace id


def of_request(traceparent: str, correlation_id: str) -> str:
    """The id a request goes by (see the module docstring)."""
    if (found := TRACEPARENT.match(traceparent)) and found.group(1) != "0" * 32:
        return found.group(1)
    return correlation_id if CORRELATION_ID.match(correlation_id) else new_id()


def begin(correlation_id: str | None) -> None:
    """This task (a request, an event's handling) goes by this id from now on."""
    _current.set(correlation_id)


def current() -> str | None:
    return _current.get()


def traceparent(correlation_id: str, event_id: str) -> str | None:
    """The event's ``traceparent``: the trace is the correlation id (when it is a trace id),
    the span one of the event's own — derived from its id, so a redo sends the same."""
    if not TRACE_ID.match(correlation_id):
        return None
    return f"00-{correlation_id}-{span_of(event_id)}-01"


def span_of(event_id: str) -> str:
    """An event's own span id (16 hex), the same every time it is sent."""
    return hashlib.sha256(event_id.encode()).hexdigest()[:16]


def is_trace_id(correlation_id: str | None) -> bool:
    return bool(correlation_id and TRACE_ID.match(correlation_id))


def trace_id_of(traceparent_value: str | None) -> str | None:
    found = TRACEPARENT.match(traceparent_value or "")
    return found.group(1) if found else None
