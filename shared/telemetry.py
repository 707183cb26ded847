"""OpenTelemetry, off unless configured: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, a service exports spans over OTLP/HTTP — its
HTTP requests (FastAPI), what it sends and reads on Kafka (aiokafka) and its database
commands (PyMongo) — and the request's correlation id is its trace id, so the id on a log
line, an event's ``ce_traceparent`` and a span are one. The SDK reads the standard
``OTEL_*`` variables (endpoint, headers, sampler, batch delay). Unset, nothing here is
imported and nothing is patched."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from shared import trace

if TYPE_CHECKING:
    from fastapi import FastAPI

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_enabled = False


def configured() -> bool:
    return any(os.environ.get(name) for name in ENDPOINTS)


def instrument(service: str, app: FastAPI) -> None:
    """Export this service's spans, if configured. Called once per app, before its
    clients are made (the Kafka and MongoDB instrumentations patch their classes)."""
    global _enabled
    if not configured():
        return
    from opentelemetry import trace as otel
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if not _enabled:
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"doorstep-{service}"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        otel.set_tracer_provider(provider)
        AIOKafkaInstrumentor().instrument()
        PymongoInstrumentor().instrument()
        _enabled = True
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")


def trace_id() -> str | None:
    """The current span's trace id (32 hex), when spans are exported and one is open."""
    if not _enabled:
        return None
    from opentelemetry import trace as otel

    context = otel.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@contextlib.contextmanager
def continued(name: str, causes: Sequence[tuple[str | None, str]]) -> Iterator[None]:
    """A span for work caused by events ((correlation id, event id) each): it continues
    the first one's trace — what the work writes and sends is part of the request that set
    it off, across services — and links the others (one entry decides many inputs)."""
    if not _enabled:
        yield
        return
    from opentelemetry import trace as otel
    from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags

    contexts = [
        SpanContext(
            int(correlation_id, 16),
            int(trace.span_of(event_id), 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        for correlation_id, event_id in causes
        if correlation_id is not None and trace.is_trace_id(correlation_id)
    ]
    parent = otel.set_span_in_context(NonRecordingSpan(contexts[0])) if contexts else None
    tracer = otel.get_tracer("doorstep")
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=otel.SpanKind.CONSUMER,
        links=[Link(c) for c in contexts[1:32]],
    ):
        yield


def shut_down() -> None:
    """Send what is still batched (a process ending)."""
    if not _enabled:
        return
    from opentelemetry import trace as otel

    provider = otel.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()
