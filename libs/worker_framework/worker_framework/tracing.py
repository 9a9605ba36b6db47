"""Trace ids across the path of a task: the W3C ``traceparent`` header, and where spans go.

A task message carries ``traceparent`` (``00-<32 hex trace id>-<16 hex parent id>-<2 hex
flags>``, https://www.w3.org/TR/trace-context/). Producers (``enqueue``, task-api's
``submitTask``) set it, keeping a valid one their caller sent; the worker reads it on receipt,
logs the trace id on every line of the task, and carries it on retry and dead-letter copies
and in progress updates.

The header is producer-controlled, so it is untrusted: any value that is not exactly a valid
version-00 (or later-version) traceparent, whatever its AMQP type, counts as absent and the
task starts a new trace. :func:`describe_invalid` gives a bounded, escaped description of such
a value for notes and logs; the raw value is never written anywhere.

Spans are optional. :class:`Tracer` is the interface and does nothing; the OpenTelemetry one
(``worker_framework.otel``) is assembled where a program starts, and only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, so that
without it no OpenTelemetry module is imported at all.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

#: The AMQP header (and HTTP header) that carries the trace context.
TRACEPARENT_HEADER = "traceparent"
#: What the OpenTelemetry SDK reads to know where to export; unset: no spans, no SDK import.
OTEL_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
#: A version-00 traceparent is exactly this long; later versions may append ``-<more>``.
_TRACEPARENT_LENGTH = 55
#: Longer values are refused before any parsing (a later version adds little).
_MAX_TRACEPARENT_LENGTH = 512
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
#: The ``sampled`` flag: set on the traces this platform starts, so a collector keeps them.
SAMPLED = "01"
#: How much of an invalid value a note shows (escaped).
_MAX_DESCRIBED_CHARS = 64
#: A trace id as task-api stores and GraphQL shows it.
TRACE_ID_PATTERN = re.compile(r"[0-9a-f]{32}")


class TraceContext(NamedTuple):
    """A valid W3C trace context: ``trace_id`` (32 lowercase hex), ``parent_id`` (16 lowercase
    hex: the span that sent the message) and ``flags`` (2 lowercase hex)."""

    trace_id: str
    parent_id: str
    flags: str = SAMPLED

    @property
    def traceparent(self) -> str:
        """The context as a version-00 ``traceparent`` value."""
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"

    def with_parent(self, parent_id: str) -> TraceContext:
        """The same trace, as sent by the span ``parent_id``."""
        return self._replace(parent_id=parent_id)


def new_span_id() -> str:
    """A random, non-zero 64-bit span id as 16 lowercase hex digits."""
    # random, not secrets: ids need to be unique, not unguessable (the OpenTelemetry SDK agrees).
    return f"{random.getrandbits(64) or 1:016x}"


def new_trace() -> TraceContext:
    """A new trace, sampled, with a random parent id."""
    # One draw for both ids, hex-encoded as bytes (twice as fast as formatting an int): this
    # runs for every message that comes without a trace. Unique, not secret: as new_span_id.
    # (random.randbytes(24) without its Python frame: the same bytes.)
    ids = random.getrandbits(192).to_bytes(24, "little").hex()
    trace_id, parent_id = ids[:32], ids[32:]
    if trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_SPAN_ID:
        return new_trace()  # invalid ids, once in 2**64 traces: draw again
    return TraceContext(trace_id, parent_id, SAMPLED)


def continue_trace(trace_id: str | None) -> TraceContext:
    """The trace ``trace_id`` (a stored id) with a new parent id; a new trace if it is not valid."""
    if trace_id is not None and is_trace_id(trace_id):
        return TraceContext(trace_id, new_span_id(), SAMPLED)
    return new_trace()


def is_trace_id(value: object) -> bool:
    """Whether ``value`` is a valid trace id: 32 lowercase hex digits, not all zero."""
    return (
        isinstance(value, str)
        and TRACE_ID_PATTERN.fullmatch(value) is not None
        and value != _ZERO_TRACE_ID
    )


def parse_traceparent(value: Any) -> TraceContext | None:
    """The trace context in a ``traceparent`` value, or None when it is not a valid one.

    Accepts text (or ASCII bytes, as some AMQP clients send header strings). Refuses every other
    type, uppercase hex, a wrong length, version ``ff``, an all-zero trace or parent id, and a
    version-00 value with anything after the flags.
    """
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or len(value) > _MAX_TRACEPARENT_LENGTH:
        return None
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_SPAN_ID:
        return None
    rest = value[_TRACEPARENT_LENGTH:]
    if version == "00" and rest:
        return None
    if rest and not rest.startswith("-"):
        return None  # a later version may only append fields after a dash
    return TraceContext(trace_id, parent_id, flags)


def trace_from_headers(headers: Mapping[Any, Any]) -> tuple[TraceContext, str | None]:
    """The message's trace context, and a note when its ``traceparent`` was invalid.

    A missing or invalid header starts a new trace; the note (for ``x-dropped-headers``)
    describes the invalid value in a bounded, escaped form.
    """
    raw = headers.get(TRACEPARENT_HEADER)
    if raw is None:
        return new_trace(), None
    trace = parse_traceparent(raw)
    if trace is not None:
        return trace, None
    note = f"{TRACEPARENT_HEADER}: invalid ({describe_invalid(raw)}), a new trace started"
    return new_trace(), note


def describe_invalid(value: Any) -> str:
    """A short, escaped description of an invalid header value: its type, and for text or
    bytes the first characters as a Python literal (no control characters, one line)."""
    if isinstance(value, str | bytes | bytearray):
        shown = repr(value[:_MAX_DESCRIBED_CHARS])
        cut = "..." if len(value) > _MAX_DESCRIBED_CHARS else ""
        return f"{type(value).__name__} {shown}{cut}"
    return type(value).__name__


def otel_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether an OTLP endpoint is configured, i.e. whether spans are to be exported."""
    env = os.environ if environ is None else environ
    return any(env.get(name, "").strip() for name in OTEL_ENDPOINT_VARIABLES)


def publish_attributes(queue: str) -> dict[str, str | int]:
    """The attributes of a span that publishes a task to ``queue``."""
    return {"messaging.system": "rabbitmq", "messaging.destination.name": queue}


class Span:
    """What a caller may tell a span while it is open. This one records nothing."""

    #: The span's own id (the parent id of the messages it sends); None when not recorded.
    span_id: str | None = None

    def set_attribute(self, key: str, value: str | int | bool) -> None:
        """Attach an attribute (e.g. the task's outcome)."""

    def set_error(self, description: str) -> None:
        """Mark the span as failed, with a short description."""


_NO_SPAN = Span()


class Tracer:
    """Where spans go. This one, the default, records nothing and changes no context.

    ``worker_framework.otel.OtelTracer`` exports them with the OpenTelemetry SDK.
    """

    #: Whether spans are recorded at all: callers on a hot path skip the no-op ones.
    records_spans = False

    @contextmanager
    def publish(
        self, sender: TraceContext, name: str, attributes: Mapping[str, str | int]
    ) -> Iterator[TraceContext]:
        """A span around publishing a message of ``sender``'s trace; yields the context to send."""
        yield sender

    @contextmanager
    def attempt(
        self, sender: TraceContext, name: str, attributes: Mapping[str, str | int]
    ) -> Iterator[Span]:
        """A span around one attempt at a task received with ``sender``."""
        yield _NO_SPAN

    def shutdown(self) -> None:
        """Flush and stop exporting (at exit)."""


#: The tracer of a program without an OTLP endpoint.
NO_TRACER = Tracer()
