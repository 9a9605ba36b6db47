"""What can become of a delivery, and the messages each outcome publishes.

``Completed`` (reply to ``reply_to`` when asked), ``RetryScheduled`` (a delayed copy with
``x-attempt`` + 1) or ``DeadLettered`` (a copy in ``Q.dlq`` with the reason in headers and the
original body byte for byte). Every copy carries the task's ``traceparent`` (the one it came
with, or the new trace started for it: see :mod:`.tracing`). The consumer acknowledges a
delivery only after the message its outcome calls for is confirmed by the broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from worker_framework.broker import Delivery, OutgoingMessage
from worker_framework.inbound import (
    ATTEMPT_HEADER,
    DROPPED_HEADERS_HEADER,
    MAX_NOTES_CHARS,
    TASK_STATE_HEADER,
    InboundMessage,
    attempt_from,
    truncate_utf8,
)
from worker_framework.tracing import TRACEPARENT_HEADER

ERROR_TYPE_HEADER = "x-error-type"
ERROR_MESSAGE_HEADER = "x-error-message"
FAILED_AT_HEADER = "x-failed-at"
#: Set by quorum queues on redelivery: how many times the message was returned so far.
DELIVERY_COUNT_HEADER = "x-delivery-count"
#: Keep header values small: they travel with every copy of the message.
MAX_ERROR_MESSAGE_BYTES = 1000
#: Exception class names are short; a longer one is cut.
MAX_ERROR_TYPE_BYTES = 200


@dataclass(frozen=True)
class Completed:
    """``execute_task`` returned ``model``, the worker's result (``data``: its JSON form, when
    the task runner already made it)."""

    model: BaseModel
    data: dict[str, Any] | None = None

    @property
    def result(self) -> dict[str, Any]:
        """The result as JSON-compatible data."""
        return self.data if self.data is not None else self.model.model_dump(mode="json")

    @property
    def result_json(self) -> bytes:
        """The result serialised as JSON."""
        return self.model.model_dump_json().encode()


@dataclass(frozen=True)
class RetryScheduled:
    """A transient failure with attempts left: retry after ``delay_ms`` (tier ``base_delay_ms``)."""

    error_type: str
    error_message: str
    next_attempt: int
    base_delay_ms: int
    delay_ms: int
    next_retry_at: datetime
    #: ``ctx.state`` of the failed attempt as JSON, for the retry copy's ``x-task-state``.
    state: str | None = None


@dataclass(frozen=True)
class DeadLettered:
    """A permanent failure, exhausted retries or an undecodable/invalid body."""

    error_type: str
    error_message: str


Outcome = Completed | RetryScheduled | DeadLettered


def attempt_of(delivery: Delivery) -> int:
    """The attempt number of a raw delivery, by the rule of :func:`inbound.attempt_from`."""
    headers = delivery.headers if isinstance(delivery.headers, dict) else {}
    return attempt_from(headers.get(ATTEMPT_HEADER))


def _notes_header(message: InboundMessage, extra: tuple[str, ...] = ()) -> str | None:
    """``x-dropped-headers``: what an earlier copy recorded, then what this one changed."""
    earlier = message.headers.get(DROPPED_HEADERS_HEADER)
    parts = [earlier] if isinstance(earlier, str) and earlier else []
    parts.extend(message.notes)
    parts.extend(extra)
    return "; ".join(parts)[:MAX_NOTES_CHARS] if parts else None


def _traced(message: InboundMessage, headers: dict[str, Any]) -> dict[str, Any]:
    """``headers`` with the task's ``traceparent``: a retry or a replay continues its trace."""
    if message.trace is not None:
        headers[TRACEPARENT_HEADER] = message.trace.traceparent
    return headers


def _copy_of(
    message: InboundMessage, headers: dict[str, Any], expiration_ms: int | None = None
) -> OutgoingMessage:
    """``message``'s body byte for byte and its (normalised) properties, with ``headers`` and
    the task's ``traceparent``."""
    _traced(message, headers)
    return OutgoingMessage(
        body=message.body,
        headers=headers,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        content_type=message.content_type,
        expiration_ms=expiration_ms,
    )


def retry_message(message: InboundMessage, outcome: RetryScheduled) -> OutgoingMessage:
    """The delayed copy that returns to the main queue when its TTL expires."""
    headers = dict(message.headers)
    headers[ATTEMPT_HEADER] = outcome.next_attempt
    headers.pop(TASK_STATE_HEADER, None)
    if outcome.state is not None:
        headers[TASK_STATE_HEADER] = outcome.state
    notes = _notes_header(message)
    if notes is not None:
        headers[DROPPED_HEADERS_HEADER] = notes
    return _copy_of(message, headers, expiration_ms=outcome.delay_ms)


def requeue_copy(message: InboundMessage) -> OutgoingMessage:
    """The same task as a new message, for a graceful return to the tail of its queue.

    Same attempt and task state; the broker's return count (``x-delivery-count``) is left out,
    since the copy starts again at zero returns.
    """
    headers = dict(message.headers)
    headers.pop(DELIVERY_COUNT_HEADER, None)
    headers[ATTEMPT_HEADER] = message.attempt
    notes = _notes_header(message)
    if notes is not None:
        headers[DROPPED_HEADERS_HEADER] = notes
    return _copy_of(message, headers)


def _failure_headers(error_type: str, error_message: str, attempt: int) -> dict[str, Any]:
    return {
        ERROR_TYPE_HEADER: truncate_utf8(error_type, MAX_ERROR_TYPE_BYTES),
        ERROR_MESSAGE_HEADER: truncate_utf8(error_message, MAX_ERROR_MESSAGE_BYTES),
        ATTEMPT_HEADER: attempt,
        FAILED_AT_HEADER: datetime.now(UTC).isoformat(),
    }


def dead_letter_message(
    message: InboundMessage, outcome: DeadLettered, attempt: int
) -> OutgoingMessage:
    """The copy kept in ``Q.dlq``: original body and properties, the reason in headers."""
    headers = dict(message.headers)
    headers.update(_failure_headers(outcome.error_type, outcome.error_message, attempt))
    notes = _notes_header(message)
    if notes is not None:
        headers[DROPPED_HEADERS_HEADER] = notes
    return _copy_of(message, headers)


def minimal_dead_letter(
    message: InboundMessage, error_type: str, error_message: str
) -> OutgoingMessage:
    """The dead letter of last resort: the original body, only framework-made headers.

    For when the ordinary copy could not be built or published; ``x-dropped-headers`` says
    that every producer header and property except ``message_id`` was left out.
    """
    headers = _failure_headers(error_type, error_message, message.attempt)
    headers[DROPPED_HEADERS_HEADER] = "all producer headers and properties but message_id"
    _traced(message, headers)
    return OutgoingMessage(
        body=message.body, headers=headers, message_id=message.message_id, content_type=None
    )


def replay_message(message: InboundMessage) -> OutgoingMessage:
    """A dead letter sent back to the main queue as a fresh task (attempts reset)."""
    headers = {
        key: value
        for key, value in message.headers.items()
        if key not in (ERROR_TYPE_HEADER, ERROR_MESSAGE_HEADER, FAILED_AT_HEADER)
    }
    headers[ATTEMPT_HEADER] = 1
    return _copy_of(message, headers)


def reply_message(message: InboundMessage, outcome: Completed) -> OutgoingMessage:
    """The result sent to the ``reply_to`` queue, correlated with the request."""
    return OutgoingMessage(
        body=outcome.result_json,
        headers=_traced(message, {ATTEMPT_HEADER: message.attempt}),
        message_id=message.message_id,
        correlation_id=message.correlation_id or message.message_id,
    )
