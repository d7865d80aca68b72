"""OpenTelemetry traces (REX_TRACING, the `otel` extra): the request, the transaction and the
delivery attempt have spans, and an attempt's span links to the trace that recorded its
event, also when another process sends it.

In-process, with the SDK's in-memory exporter; then as deployed on PostgreSQL (`rex serve
--no-worker` and `rex worker`, both exporting over OTLP/HTTP to a local sink), where only the
database carries the trace context from one process to the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from rex import tracing
from tests.operations.conftest import Proc, rex_env, serve, start
from tests.receiver import Receiver
from tests.support import (
    api_key,
    free_port,
    make_settings,
    serve_rex,
    sql,
    truncate_all,
    wait_until,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    tracing.configure("off", process="api", exporter=spans)
    try:
        yield spans
    finally:
        tracing.shutdown()


def test_off_by_default_records_no_span_and_no_trace_row(tmp_path: Path) -> None:
    assert tracing.ENABLED is False
    settings = make_settings(f"sqlite:///{tmp_path / 'rex.db'}")
    with serve_rex(settings) as rex, rex.client() as client:
        client.post("/capture", json={"email": "plain@example.com"}).raise_for_status()
    assert sql(settings.database_url, "SELECT count(*) AS n FROM event_traces")[0].n == 0


def test_capture_transaction_and_delivery_spans_are_linked(
    tmp_path: Path, receiver: Receiver, exporter: InMemorySpanExporter
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'rex.db'}")
    with serve_rex(settings) as rex, rex.client() as client:
        client.post("/webhooks", json={"url": receiver.url(), "events": ["contact.created"]})
        answer = client.post(
            "/capture", json={"email": "traced@example.com"}, headers={"traceparent": CALLER}
        )
        assert answer.status_code == 201, answer.text
        receiver.wait_for(1)
        wait_until(
            lambda: any(s.name == "deliver contact.created" for s in exporter.get_finished_spans())
        )
    spans = exporter.get_finished_spans()
    [request] = [s for s in spans if s.name == "POST /capture"]
    assert request.kind == SpanKind.SERVER
    assert format(request.context.trace_id, "032x") == TRACE_ID  # the caller's trace goes on
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/capture"
    assert request.attributes["http.response.status_code"] == 201
    assert request.attributes["rex.request_id"] == answer.headers["x-request-id"]
    transactions = [
        s
        for s in spans
        if s.name == "transaction"
        and s.parent is not None
        and s.parent.span_id == request.context.span_id
    ]
    assert transactions, [s.name for s in spans]

    [deliver] = [s for s in spans if s.name == "deliver contact.created"]
    assert deliver.kind == SpanKind.CLIENT
    assert deliver.parent is None  # a root of its own, joined by a link
    [link] = deliver.links
    assert format(link.context.trace_id, "032x") == TRACE_ID
    assert link.context.span_id in {t.context.span_id for t in transactions}
    assert deliver.attributes is not None
    assert deliver.attributes["http.response.status_code"] == 200
    assert deliver.attributes["rex.event.type"] == "contact.created"
    assert deliver.attributes["rex.delivery.result"] == "delivered"
    [stored] = sql(settings.database_url, "SELECT traceparent FROM event_traces")
    assert stored.traceparent.split("-")[1] == TRACE_ID


def _exported_spans(sink: Receiver) -> list[tuple[str, Any]]:
    """(the `rex.process` of the exporting process, span) for every span the sink got."""
    found = []
    for request in sink.requests:
        export = ExportTraceServiceRequest()
        export.ParseFromString(request.body)
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                found += [(attributes.get("rex.process", ""), s) for s in scope_spans.spans]
    return found


@pytest.mark.postgres
def test_a_workers_delivery_span_links_to_the_api_process_trace(
    postgres_url: str, tmp_path: Path, receiver: Receiver, procs: list[Proc]
) -> None:
    with Receiver() as sink:
        otel = {
            "REX_TRACING": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.base_url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        truncate_all(postgres_url)
        api = serve(procs, postgres_url, tmp_path, "--no-worker", **otel)
        port = free_port()
        procs.append(
            start(
                ["worker", "--http-port", str(port)],
                rex_env(postgres_url, **otel),
                tmp_path / "worker.log",
                f"http://127.0.0.1:{port}/readyz",
            )
        )
        key = api_key(postgres_url)
        with httpx.Client(base_url=api.url, headers={"X-Api-Key": key}) as client:
            client.post(
                "/webhooks", json={"url": receiver.url(), "events": ["contact.created"]}
            ).raise_for_status()
            client.post(
                "/capture", json={"email": "otlp@example.com"}, headers={"traceparent": CALLER}
            ).raise_for_status()
        receiver.wait_for(1, timeout=30)

        def delivered_span_exported() -> bool:
            return any(
                p == "worker" and s.name == "deliver contact.created"
                for p, s in _exported_spans(sink)
            )

        wait_until(delivered_span_exported, timeout=30)
        assert {r.path for r in sink.requests} == {"/v1/traces"}
        spans = _exported_spans(sink)
        api_spans = [s for p, s in spans if p == "api" and s.trace_id.hex() == TRACE_ID]
        assert {"POST /capture", "transaction"} <= {s.name for s in api_spans}
        [deliver] = [s for p, s in spans if p == "worker" and s.name == "deliver contact.created"]
        [link] = deliver.links
        assert link.trace_id.hex() == TRACE_ID
        assert link.span_id in {s.span_id for s in api_spans}
