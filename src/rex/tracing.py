"""OpenTelemetry traces: the request, its transaction, and each delivery attempt.

Optional: install the extra (``pip install 'rexgtm[otel]'``) and set ``REX_TRACING=otlp``
(spans exported over OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT``, named by
``OTEL_SERVICE_NAME``: the standard OpenTelemetry variables) or ``console``. Off (the
default), nothing here imports OpenTelemetry and every hook is one boolean test.

A capture and its delivery happen in different processes (or at least different tasks,
seconds or hours apart). The trace context current when an event is recorded is stored
with the event (``event_traces``, in the same transaction); the worker reads it back when
it claims the delivery, and each attempt's span *links* to it: the delivery is found from
the capture's trace, and the capture from the delivery's, across processes. A link rather
than a parent, as OpenTelemetry's messaging conventions do for work taken from a queue:
one capture fans out to many deliveries, each retried on its own schedule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

T = TypeVar("T")
TracingMode = Literal["off", "otlp", "console"]

# Read on every hook: False until `configure` turns tracing on.
ENABLED = False
_tracer: Tracer | None = None
_provider: Any = None  # the SDK's TracerProvider, once configured

INSTRUMENTATION = "rex"


class TracingUnavailable(RuntimeError):
    """Tracing was asked for, but the `otel` extra is not installed."""


def configure(
    mode: TracingMode,
    *,
    process: str,
    exporter: SpanExporter | None = None,
) -> None:
    """Turn tracing on for this process (``mode`` other than ``off``, or an ``exporter``
    given: the tests' in-memory one). ``process`` (``api``, ``worker``) is a resource
    attribute, so the spans of ``rex serve`` and ``rex worker`` can be told apart."""
    global ENABLED, _tracer, _provider
    if mode == "off" and exporter is None:
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError as exc:
        raise TracingUnavailable(
            "REX_TRACING needs OpenTelemetry: pip install 'rexgtm[otel]'"
        ) from exc
    from rex._version import __version__

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES too (they win).
    resource = Resource.create(
        {"service.name": "rex", "service.version": __version__, "rex.process": process}
    )
    provider = TracerProvider(resource=resource)
    processor: SpanProcessor
    if exporter is not None:
        processor = SimpleSpanProcessor(exporter)
    elif mode == "console":
        processor = BatchSpanProcessor(ConsoleSpanExporter())
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise TracingUnavailable(
                "REX_TRACING=otlp needs the OTLP exporter: pip install 'rexgtm[otel]'"
            ) from exc
        processor = BatchSpanProcessor(OTLPSpanExporter())
    provider.add_span_processor(processor)
    _provider = provider
    _tracer = provider.get_tracer(INSTRUMENTATION, __version__)
    ENABLED = True


def shutdown() -> None:
    """Flush and stop (spans still buffered are exported); tracing is off afterwards."""
    global ENABLED, _tracer, _provider
    provider, _provider = _provider, None
    ENABLED = False
    _tracer = None
    if provider is not None:
        provider.shutdown()


def _get_tracer() -> Tracer:
    assert _tracer is not None, "tracing is not configured"
    return _tracer


# --- the request (rex.api.requests) ---------------------------------------------------------


@dataclass(slots=True)
class ActiveRequest:
    span: Span
    token: object
    method: str


def start_request(scope: Mapping[str, Any]) -> ActiveRequest | None:
    """A server span for this request, current until ``finish_request``; the caller's
    ``traceparent`` header (W3C Trace Context), if any, is its parent."""
    if not ENABLED:
        return None
    from opentelemetry import context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name in (b"traceparent", b"tracestate")
    }
    parent = TraceContextTextMapPropagator().extract(carrier) if carrier else None
    method = scope.get("method", "")
    span = _get_tracer().start_span(
        method or "HTTP",
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": scope.get("path", "")},
    )
    token = context.attach(trace.set_span_in_context(span))
    return ActiveRequest(span, token, method)


def finish_request(active: ActiveRequest, *, route: str, status: int, request_id: str) -> None:
    from opentelemetry import context
    from opentelemetry.trace import Status, StatusCode

    span = active.span
    span.update_name(f"{active.method} {route}".strip())
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    span.set_attribute("rex.request_id", request_id)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    span.end()
    context.detach(active.token)  # type: ignore[arg-type]


# --- the transaction (rex.db.engine) -------------------------------------------------------


@contextlib.contextmanager
def transaction_span(system: str) -> Iterator[None]:
    """A span around one unit of work, from asking for the transaction to its commit."""
    if not ENABLED:
        yield
        return
    from opentelemetry import trace

    with _get_tracer().start_as_current_span(
        "transaction", kind=trace.SpanKind.INTERNAL, attributes={"db.system.name": system}
    ):
        yield


def carry_context(
    work: Callable[[Any], Awaitable[T]],
) -> Callable[[Any], Awaitable[T]]:
    """``work`` run, on another task (SQLite's group commit), in the caller's trace context."""
    if not ENABLED:
        return work
    from opentelemetry import context

    captured = context.get_current()

    async def in_context(conn: Any) -> T:
        token = context.attach(captured)
        try:
            return await work(conn)
        finally:
            context.detach(token)

    return in_context


def current_traceparent() -> str | None:
    """The current span's context as a W3C ``traceparent`` value, or None."""
    if not ENABLED:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


# --- the delivery attempt (rex.worker.loop) ------------------------------------------------


class AttemptSpan:
    """What the worker tells the span of one attempt once it knows the answer."""

    def __init__(self, span: Span | None) -> None:
        self._span = span

    def answered(self, *, status_code: int | None, error: str | None, result: str) -> None:
        span = self._span
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        if status_code is not None:
            span.set_attribute("http.response.status_code", status_code)
        if error is not None:
            span.set_attribute("error.type", error[:200])
        span.set_attribute("rex.delivery.result", result)
        if status_code is None or not 200 <= status_code < 300:
            span.set_status(Status(StatusCode.ERROR, error or f"HTTP {status_code}"))


_NO_SPAN = AttemptSpan(None)


@contextlib.contextmanager
def attempt_span(
    *,
    delivery_id: str,
    event_id: str,
    event_type: str,
    endpoint_id: str,
    attempt: int,
    url_host: str | None,
    traceparent: str | None,
) -> Iterator[AttemptSpan]:
    """A client span for one signed POST, linked to the trace that recorded its event."""
    if not ENABLED:
        yield _NO_SPAN
        return
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    links = []
    if traceparent:
        recorded = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
        linked = trace.get_current_span(recorded).get_span_context()
        if linked.is_valid:
            links.append(trace.Link(linked, {"rex.link": "recorded_by"}))
    attributes: dict[str, str | int] = {
        "http.request.method": "POST",
        "rex.delivery.id": delivery_id,
        "rex.delivery.attempt": attempt,
        "rex.event.id": event_id,
        "rex.event.type": event_type,
        "rex.endpoint.id": endpoint_id,
    }
    if url_host:
        attributes["server.address"] = url_host
    # A root span of its own: the worker's cycle is not the capture's trace (see the module
    # docstring); the link joins them.
    with _get_tracer().start_as_current_span(
        f"deliver {event_type}",
        context=trace.set_span_in_context(trace.INVALID_SPAN),
        kind=trace.SpanKind.CLIENT,
        links=links,
        attributes=attributes,
    ) as span:
        yield AttemptSpan(span)
