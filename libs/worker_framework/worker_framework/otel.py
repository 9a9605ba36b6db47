"""Spans exported with the OpenTelemetry SDK over OTLP/HTTP (the optional extra ``otel``).

Imported only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set: see
:func:`worker_framework.command_context.make_tracer`. The SDK reads the standard ``OTEL_*``
variables itself (endpoint, headers, timeout, sampler, resource attributes); ``service.name``
is the worker type (or what the caller names) unless ``OTEL_SERVICE_NAME`` says otherwise.

Spans are batched (``BatchSpanProcessor``) and sent from the SDK's own thread, so a task never
waits for the collector; :meth:`OtelTracer.shutdown` flushes what is left at exit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from worker_framework.tracing import Span, TraceContext, Tracer

#: The instrumentation scope named in every exported span.
SCOPE = "worker_framework"


class _OtelSpan(Span):
    """An open OpenTelemetry span, seen through the framework's :class:`Span`."""

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        context = span.get_span_context()
        self.span_id = format(context.span_id, "016x") if context.is_valid else None

    def set_attribute(self, key: str, value: str | int | bool) -> None:
        self._span.set_attribute(key, value)

    def set_error(self, description: str) -> None:
        self._span.set_status(Status(StatusCode.ERROR, description))


def _remote_parent(trace_context: TraceContext) -> Context:
    """An OpenTelemetry context whose current span is the (remote) sender of a message."""
    parent = SpanContext(
        trace_id=int(trace_context.trace_id, 16),
        span_id=int(trace_context.parent_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(int(trace_context.flags, 16)),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


class OtelTracer(Tracer):
    """Exports a span per publish and per task attempt to the configured OTLP/HTTP endpoint.

    Parameters:
        service_name: ``service.name`` of the spans (a worker type, ``task-api``), unless
            ``OTEL_SERVICE_NAME`` is set.
    """

    records_spans = True

    def __init__(self, service_name: str) -> None:
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
        self._provider = TracerProvider(resource=Resource.create(attributes))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer(SCOPE)

    @contextmanager
    def publish(
        self, sender: TraceContext, name: str, attributes: Mapping[str, str | int]
    ) -> Iterator[TraceContext]:
        with self._tracer.start_as_current_span(
            name, context=_remote_parent(sender), kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            context = span.get_span_context()
            # An unsampled parent gives a non-recording span: the message keeps the parent.
            yield (
                sender.with_parent(format(context.span_id, "016x")) if context.is_valid else sender
            )

    @contextmanager
    def attempt(
        self, sender: TraceContext, name: str, attributes: Mapping[str, str | int]
    ) -> Iterator[Span]:
        with self._tracer.start_as_current_span(
            name, context=_remote_parent(sender), kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            yield _OtelSpan(span)

    def shutdown(self) -> None:
        self._provider.shutdown()
