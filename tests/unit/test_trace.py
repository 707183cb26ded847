"""One id follows a request through everything it causes (shared.trace): how a request's
id is chosen, and how it travels on an event as W3C trace context."""

from __future__ import annotations

import re

from shared import trace
from shared.contracts import orders as o
from shared.events import Event, from_record, to_record

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_callers_trace_context_names_the_request_before_its_correlation_header() -> None:
    assert trace.of_request(f"00-{TRACE}-00f067aa0ba902b7-01", "mine") == TRACE
    assert trace.of_request("00-" + "0" * 32 + "-00f067aa0ba902b7-01", "mine") == "mine"
    assert trace.of_request("garbage", "call-42") == "call-42"
    made = trace.of_request("", "not plain; dropped\n")
    assert re.fullmatch(r"[0-9a-f]{32}", made)  # a new id is itself a trace id


def event(correlation_id: str | None) -> Event:
    return Event(
        id="orders:c1:7:0",
        source="/orders",
        community_id="c1",
        correlation_id=correlation_id,
        data=o.ReviewOrder(command_id="k", actor="s", order_id="o"),
    )


def test_an_event_carries_its_requests_trace_as_cloudevents_traceparent() -> None:
    record = to_record(event(TRACE))
    headers = dict(record.headers)
    parent = headers["ce_traceparent"].decode()
    assert parent.startswith(f"00-{TRACE}-") and parent.endswith("-01")
    again = dict(to_record(event(TRACE)).headers)["ce_traceparent"]
    assert again.decode() == parent  # a redo sends the same span
    assert from_record(record.key, record.value, record.headers).correlation_id == TRACE
    # From a producer that sets only the trace context, the id is still found.
    only_trace = [(k, v) for k, v in record.headers if k != "ce_correlationid"]
    assert from_record(record.key, record.value, only_trace).correlation_id == TRACE
    # A caller's plain id is no trace id: it travels as the correlation id alone.
    plain = dict(to_record(event("call-42")).headers)
    assert "ce_traceparent" not in plain and plain["ce_correlationid"] == b"call-42"
