"""OpenTelemetry, configured: the services, as real processes on a broker of their own,
export their spans over OTLP/HTTP to a receiver here; one order's trace, named by the
caller's ``traceparent``, has the HTTP request, the Kafka sends and the database commands
of the service that took it, and goes on across Kafka into the services that acted on it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from doorstep_cli.localstack import KafkaNode, free_port
from tests.conftest import Stack
from tests.e2e.client import Community, eventually
from tests.e2e.conftest import Running, start_services, stop_services

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # span kinds in OTLP


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: keeps every span it is sent, with its service."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), Handler)
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    found.append(
                        {
                            "service": attrs.get("service.name"),
                            "trace_id": span.trace_id.hex(),
                            "links": {link.trace_id.hex() for link in span.links},
                            "kind": span.kind,
                            "name": span.name,
                            "attributes": {a.key: a.value.string_value for a in span.attributes},
                        }
                    )
        with self.server.lock:
            self.server.spans.extend(found)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def traced(
    stack: Stack, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """Services exporting spans, on a broker of their own (on the session's they would
    join the session services' consumer groups)."""
    base = tmp_path_factory.mktemp("traced-kafka")
    node = KafkaNode(base / "kafka", log_file=base / "kafka.log")
    node.start()
    try:
        running = start_services(
            Stack(node.bootstrap, stack.mongo_url, stack.origin),
            tmp_path_factory.mktemp("traced"),
            {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "200"},
        )
        try:
            yield running
        finally:
            stop_services(running)
    finally:
        node.stop()


def test_one_orders_trace_is_exported_from_the_request_across_kafka(
    traced: Running, receiver: Receiver
) -> None:
    with httpx.Client(timeout=60) as http:
        community = Community(traced, http, f"c{uuid.uuid4().hex[:8]}")
        community.define()
        cadre = community.volunteer("g1")
        home = community.household("g1")["household_id"]
        eventually(  # dispatch has the cadre on duty: the order's entry is its own
            lambda: (
                cadre
                in {
                    v["volunteer_id"]
                    for v in community.ok("GET", "dispatch", "/v1/tasks", community.staff)[
                        "on_duty"
                    ]
                }
            ),
            what="the cadre on duty at dispatch",
        )
        trace_id = uuid.uuid4().hex
        placed = community.call(
            "POST",
            "orders",
            "/v1/orders",
            community.resident(home),
            json={"category": "medicine", "items": "降压药"},
            headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
        assert placed.status_code == 201, placed.text
        assert placed.headers["X-Correlation-ID"] == trace_id  # the log's id is the trace's

    def spans(service: str, kind: int) -> list[dict[str, Any]]:
        with receiver.lock:
            return [
                s
                for s in receiver.spans
                if s["trace_id"] == trace_id and s["service"] == service and s["kind"] == kind
            ]

    request = eventually(lambda: spans("doorstep-orders", SERVER), what="the request's span")
    assert any("/v1/orders" in s["name"] for s in request)
    eventually(lambda: spans("doorstep-orders", PRODUCER), what="the command sent on Kafka")
    import time

    time.sleep(5)
    with receiver.lock:
        for sp in receiver.spans:
            print(
                sp["service"],
                sp["kind"],
                sp["name"],
                sp["trace_id"] == trace_id,
                list(sp["attributes"])[:4],
            )
    eventually(lambda: spans("doorstep-orders", CLIENT), what="orders' database commands")

    # Across Kafka: dispatch decided on what orders sent, and notify told the resident, in
    # the same trace — or, where the order shared an entry with other inputs, linked to it.
    def continued(service: str) -> list[dict[str, Any]]:
        with receiver.lock:
            return [
                s
                for s in receiver.spans
                if s["service"] == service
                and s["kind"] == CONSUMER
                and trace_id in (s["links"] | {s["trace_id"]})
            ]

    eventually(lambda: continued("doorstep-dispatch"), what="dispatch deciding on it")
    eventually(lambda: continued("doorstep-notify"), what="notify telling the resident")
