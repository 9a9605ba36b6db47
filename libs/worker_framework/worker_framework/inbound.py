"""The trust boundary: every producer-controlled field of a delivery, read once into a safe view.

Producers are other services; whatever they send is untrusted. :func:`normalise` reads a
:class:`~worker_framework.broker.Delivery` once, on receipt, into an :class:`InboundMessage`,
and nothing after it (outcomes, logs, progress, the CLI) looks at the raw delivery again.

The rules (also in the framework README, "Trust model"):

- ``x-attempt``: an int from an int, a decimal or a string of digits; absent, not a number
  (text, a list, a bool, ``inf``, ``nan``) or below 1 gives 1; above :data:`MAX_ATTEMPT`
  gives :data:`MAX_ATTEMPT`.
- ``message_id``, ``correlation_id``, ``reply_to``, ``content_type``: ``str`` or None. Bytes
  that are not UTF-8 are decoded with replacement characters, text is cut to what fits an
  AMQP short string (255 bytes), empty text is None.
- Headers: copied into a table the AMQP encoder is known to accept (str, bytes, bool, None,
  int within signed 64 bits, Decimal within the AMQP decimal range, datetime within the
  timestamp range, nested tables and arrays up to :data:`MAX_HEADER_DEPTH`). What does not fit
  is rewritten as text (a float, a huge int, an odd decimal or date) or dropped (other types,
  nesting too deep, headers past the :data:`MAX_CARRIED_HEADERS_BYTES` budget); long strings
  are cut to :data:`MAX_HEADER_VALUE_BYTES`. Each change is described in :attr:`notes`, which
  the dead letter carries in ``x-dropped-headers``.
- ``traceparent``: a valid W3C trace context becomes :attr:`InboundMessage.trace`; absent or
  invalid (any other type, wrong length, uppercase, zero ids, version ``ff``), a new trace is
  started, and an invalid value is noted (bounded and escaped, see :mod:`.tracing`).
- The body stays bytes, untouched: copies carry it byte for byte.
"""

from __future__ import annotations

import calendar
import decimal
import json
import math
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from worker_framework.broker import UNDECODABLE_HEADERS, Delivery
from worker_framework.tracing import TraceContext, new_trace, trace_from_headers

ATTEMPT_HEADER = "x-attempt"
#: ``ctx.state`` of the previous attempt, as a JSON object (see ``TaskContext``).
TASK_STATE_HEADER = "x-task-state"
#: Largest ``x-task-state`` read or written.
MAX_STATE_BYTES = 16 * 1024
#: Where a copy records what normalisation dropped or rewrote.
DROPPED_HEADERS_HEADER = "x-dropped-headers"
#: Far above any sensible ``WORKER_MAX_RETRIES``, and small enough for every field it lands in
#: (an AMQP long, GraphQL's 32-bit ``Int``).
MAX_ATTEMPT = 1_000_000
#: AMQP short strings (property values, header names) hold at most 255 bytes of UTF-8.
MAX_SHORT_STRING_BYTES = 255
#: One header value travels with every copy of the message: longer text is cut.
MAX_HEADER_VALUE_BYTES = 16 * 1024
#: A value rewritten as text keeps this much (a double as an int has up to 309 digits).
MAX_REWRITTEN_BYTES = 1024
#: All carried headers together, encoded: far below the smallest common frame size (128 KiB),
#: leaving room for the framework's own headers in the same frame.
MAX_CARRIED_HEADERS_BYTES = 64 * 1024
#: Tables and arrays nested deeper than this are dropped (pika decodes and encodes them
#: recursively).
MAX_HEADER_DEPTH = 8
#: ``x-dropped-headers`` keeps at most this many characters.
MAX_NOTES_CHARS = 2000
#: Headers RabbitMQ adds when it dead-letters (our delay queues do); copies must not carry them.
BROKER_DEATH_HEADERS = ("x-death", "x-first-death-", "x-last-death-")


#: Shared by every message without headers or state: read-only, so sharing is safe.
_EMPTY: Mapping[str, Any] = MappingProxyType({})


class InboundMessage(NamedTuple):
    """A delivery as the framework may use it: every field validated (see the module docstring).

    Immutable. ``headers`` are the producer's headers that copies carry: encodable, within
    budget, without ``x-attempt`` and the broker's dead-lettering headers. ``notes`` say what was
    dropped or rewritten, for the dead letter's ``x-dropped-headers``. ``state`` is the previous
    attempt's ``ctx.state``; ``trace`` the task's trace context (see :mod:`.tracing`: None
    only for a message built by hand). (A named tuple rather than a frozen dataclass: built for
    every delivery on the I/O thread, it costs a third as much.)
    """

    body: bytes
    attempt: int = 1
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    content_type: str | None = None
    redelivered: bool = False
    headers: Mapping[str, Any] = _EMPTY
    notes: tuple[str, ...] = ()
    state: Mapping[str, Any] = _EMPTY
    trace: TraceContext | None = None


def normalise(delivery: Delivery) -> InboundMessage:
    """Read ``delivery`` into an :class:`InboundMessage`; never raises."""
    body = delivery.body if isinstance(delivery.body, bytes) else b""
    try:
        raw_headers = delivery.headers if isinstance(delivery.headers, dict) else {}
        notes: list[str] = []
        # The common case, a task with nothing but its attempt number, skips the copy.
        if len(raw_headers) > 1 or (raw_headers and ATTEMPT_HEADER not in raw_headers):
            headers: Mapping[str, Any] = _carried(raw_headers, notes)
            state: Mapping[str, Any] = _state_from(raw_headers.get(TASK_STATE_HEADER))
            trace, trace_note = trace_from_headers(raw_headers)
            if trace_note is not None:
                notes.append(trace_note)
        else:
            headers = state = _EMPTY
            trace = new_trace()
        return InboundMessage(
            body,
            attempt_from(raw_headers.get(ATTEMPT_HEADER)),
            short_text(delivery.message_id),
            short_text(delivery.correlation_id),
            short_text(delivery.reply_to),
            short_text(delivery.content_type),
            delivery.redelivered is True,
            headers,
            tuple(notes),
            state,
            trace,
        )
    except Exception as error:  # noqa: BLE001 - the boundary must hand on something settleable
        return InboundMessage(
            body=body,
            redelivered=delivery.redelivered is True,
            notes=(f"all headers and properties dropped: unreadable ({type(error).__name__})",),
            trace=new_trace(),
        )


def attempt_from(value: Any) -> int:
    """The attempt number a header value stands for (the rule in the module docstring)."""
    if value.__class__ is int and 1 <= value <= MAX_ATTEMPT:
        return int(value)  # the usual header, checked first (bool and pika's long go below)
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float | decimal.Decimal):
        number = int(value) if _finite(value) else None
    elif isinstance(value, str | bytes):
        number = _parse_int(value)
    if number is None or number < 1:
        return 1
    return min(number, MAX_ATTEMPT)


def _state_from(value: Any) -> dict[str, Any]:
    """``x-task-state`` as a JSON object; anything else (or too long) counts as none."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str) or len(value) > MAX_STATE_BYTES:
        return {}
    try:
        state = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    return state if isinstance(state, dict) else {}


def _finite(value: float | decimal.Decimal) -> bool:
    return value.is_finite() if isinstance(value, decimal.Decimal) else math.isfinite(value)


def _parse_int(value: str | bytes) -> int | None:
    text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else value
    text = text.strip()
    digits = text.lstrip("+-")
    if not digits.isdecimal() or not digits.isascii() or len(text) - len(digits) > 1:
        return None
    if len(digits) > len(str(MAX_ATTEMPT)):
        # Never int() a huge string: the clamp gives the same answer without the cost.
        return MAX_ATTEMPT if not text.startswith("-") else None
    return int(text)


def clean_text(value: str) -> str:
    """``value`` without lone surrogates (which no UTF-8 encoder accepts)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", errors="replace").decode("utf-8")
    return value


def truncate_utf8(value: str, max_bytes: int) -> str:
    """``value`` cut to at most ``max_bytes`` of UTF-8, never inside a character."""
    encoded = value.encode("utf-8", errors="replace")
    if len(encoded) <= max_bytes:
        return value if value.isascii() else encoded.decode("utf-8")
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def short_text(value: Any) -> str | None:
    """A property value as text fit for an AMQP short string; None when absent or empty."""
    if value.__class__ is str and 0 < len(value) <= MAX_SHORT_STRING_BYTES and value.isascii():
        return value  # the usual id (checked first: four properties of every delivery)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str) or not value:
        return None
    return truncate_utf8(value, MAX_SHORT_STRING_BYTES)


def _carried(raw: dict[Any, Any], notes: list[str]) -> dict[str, Any]:
    """The encodable copy of the producer's headers, within budget (``notes`` gets the changes)."""
    if UNDECODABLE_HEADERS in raw:
        notes.append(f"all headers dropped: {raw[UNDECODABLE_HEADERS]}")
        return {}
    carried: dict[str, Any] = {}
    sizes: dict[str, int] = {}
    for raw_key, value in raw.items():
        key = _header_name(raw_key, notes)
        if key is None or key == ATTEMPT_HEADER or key.startswith(BROKER_DEATH_HEADERS):
            continue
        if key in carried:
            notes.append(f"{key}: dropped (duplicate name after decoding)")
            continue
        try:
            clean, size = _encodable(value, 1, key, notes)
        except _Dropped as reason:
            notes.append(f"{key}: dropped ({reason})")
            continue
        carried[key] = clean
        sizes[key] = 1 + len(key.encode()) + size
    total = sum(sizes.values())
    # Largest first: a single huge header goes before many ordinary ones.
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
        if total <= MAX_CARRIED_HEADERS_BYTES:
            break
        total -= sizes[key]
        del carried[key]
        notes.append(f"{key}: dropped (headers over {MAX_CARRIED_HEADERS_BYTES} bytes)")
    return carried


class _Dropped(Exception):
    """A header value the framework does not copy."""


def _header_name(raw_key: Any, notes: list[str]) -> str | None:
    if isinstance(raw_key, bytes):
        key = raw_key.decode("utf-8", errors="replace")
        notes.append(f"{truncate_utf8(key, 64)}: name not UTF-8, rewritten")
    elif isinstance(raw_key, str):
        key = raw_key
    else:
        notes.append(f"a header named by a {type(raw_key).__name__}: dropped")
        return None
    fitted = truncate_utf8(key, MAX_SHORT_STRING_BYTES)
    if fitted != key:
        notes.append(f"{truncate_utf8(fitted, 64)}: name rewritten to fit 255 bytes")
    return fitted


def _as_text(value: Any, key: str, notes: list[str], why: str) -> tuple[str, int]:
    text = truncate_utf8(str(value), MAX_REWRITTEN_BYTES)
    notes.append(f"{key}: {why}, sent as text")
    return text, 5 + len(text.encode())


def _encodable(value: Any, depth: int, key: str, notes: list[str]) -> tuple[Any, int]:
    """``value`` as the AMQP encoder accepts it, and its encoded size; raises _Dropped."""
    if value is None:
        return None, 1
    if isinstance(value, bool):
        return value, 2
    if isinstance(value, int):
        # Comparisons, not ``in range(...)``: pika decodes 64-bit ints as a subclass of int,
        # for which a range membership test counts through the whole range.
        if -(2**63) <= value < 2**63:
            return value, 9
        return _as_text(value, key, notes, "integer beyond 64 bits")
    if isinstance(value, str):
        text = truncate_utf8(value, MAX_HEADER_VALUE_BYTES)
        if len(text) < len(value):
            notes.append(f"{key}: text cut to {MAX_HEADER_VALUE_BYTES} bytes")
        return text, 5 + len(text.encode())
    if isinstance(value, bytes):
        if len(value) > MAX_HEADER_VALUE_BYTES:
            notes.append(f"{key}: bytes cut to {MAX_HEADER_VALUE_BYTES}")
            value = value[:MAX_HEADER_VALUE_BYTES]
        return value, 5 + len(value)
    if isinstance(value, float):
        return _as_text(repr(value), key, notes, "floating-point number")
    if isinstance(value, decimal.Decimal):
        if _decimal_fits(value):
            return value, 6
        return _as_text(value, key, notes, "decimal outside the AMQP range")
    if isinstance(value, datetime):
        if _timestamp_fits(value):
            return value, 9
        return _as_text(value.isoformat(), key, notes, "date outside the AMQP range")
    if isinstance(value, dict | list | tuple):
        if depth >= MAX_HEADER_DEPTH:
            raise _Dropped(f"nested deeper than {MAX_HEADER_DEPTH}")
        if isinstance(value, dict):
            table: dict[str, Any] = {}
            size = 5
            for inner_key, inner in value.items():
                name = _header_name(inner_key, notes)
                if name is None:
                    continue
                clean, inner_size = _encodable(inner, depth + 1, f"{key}.{name}", notes)
                table[name] = clean
                size += 1 + len(name.encode()) + inner_size
            return table, size
        items = []
        size = 5
        for inner in value:
            clean, inner_size = _encodable(inner, depth + 1, f"{key}[]", notes)
            items.append(clean)
            size += inner_size
        return items, size
    raise _Dropped(f"unsupported type {type(value).__name__}")


def _decimal_fits(value: decimal.Decimal) -> bool:
    """Whether pika can encode ``value`` (``>cBi``: 0-255 decimals, a signed 32-bit integer)."""
    if not value.is_finite():
        return False
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    if not isinstance(exponent, int):
        return False
    try:
        if exponent < 0:
            raw = int(normal * (decimal.Decimal(10) ** -exponent))
            return -exponent <= 255 and -(2**31) <= raw < 2**31
        return -(2**31) <= int(normal) < 2**31
    except (decimal.DecimalException, OverflowError, ValueError):
        return False


def _timestamp_fits(value: datetime) -> bool:
    """Whether pika can encode ``value`` (seconds since the epoch as an unsigned 64-bit int)."""
    try:
        return 0 <= calendar.timegm(value.utctimetuple()) < 2**64
    except (OverflowError, ValueError):
        return False
