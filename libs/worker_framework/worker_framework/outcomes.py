"""What can become of a delivery, and the messages each outcome publishes.

``Completed`` (reply to ``reply_to`` when asked), ``RetryScheduled`` (a delayed copy with
``x-attempt`` + 1) or ``DeadLettered`` (a copy in ``Q.dlq`` with the reason in headers and the
original body byte for byte). The consumer acknowledges a delivery only after the message its
outcome calls for is confirmed by the broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from worker_framework.broker import Delivery, OutgoingMessage

ATTEMPT_HEADER = "x-attempt"
ERROR_TYPE_HEADER = "x-error-type"
ERROR_MESSAGE_HEADER = "x-error-message"
FAILED_AT_HEADER = "x-failed-at"
#: Headers RabbitMQ adds when it dead-letters (our delay queues do); copies must not carry them.
_BROKER_DEATH_HEADERS = ("x-death", "x-first-death-", "x-last-death-")
#: Keep header values small: they travel with every copy of the message.
MAX_ERROR_MESSAGE_CHARS = 1000


@dataclass(frozen=True)
class Completed:
    """``execute_task`` returned ``model``, the worker's result."""

    model: BaseModel

    @property
    def result(self) -> dict[str, Any]:
        """The result as JSON-compatible data."""
        return self.model.model_dump(mode="json")

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


@dataclass(frozen=True)
class DeadLettered:
    """A permanent failure, exhausted retries or an undecodable/invalid body."""

    error_type: str
    error_message: str


Outcome = Completed | RetryScheduled | DeadLettered


def attempt_of(delivery: Delivery) -> int:
    """The ``x-attempt`` header as a positive int; 1 when absent or malformed."""
    value = delivery.headers.get(ATTEMPT_HEADER)
    try:
        attempt = int(value.decode() if isinstance(value, bytes) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1
    return max(attempt, 1)


def _carried_headers(delivery: Delivery) -> dict[str, Any]:
    return {
        key: value
        for key, value in delivery.headers.items()
        if not key.startswith(_BROKER_DEATH_HEADERS) and key != ATTEMPT_HEADER
    }


def _copy_of(
    delivery: Delivery, headers: dict[str, Any], expiration_ms: int | None = None
) -> OutgoingMessage:
    """``delivery``'s body and properties, byte for byte, with ``headers``."""
    return OutgoingMessage(
        body=delivery.body,
        headers=headers,
        message_id=delivery.message_id,
        correlation_id=delivery.correlation_id,
        reply_to=delivery.reply_to,
        content_type=delivery.content_type,
        expiration_ms=expiration_ms,
    )


def retry_message(delivery: Delivery, outcome: RetryScheduled) -> OutgoingMessage:
    """The delayed copy that returns to the main queue when its TTL expires."""
    headers = _carried_headers(delivery)
    headers[ATTEMPT_HEADER] = outcome.next_attempt
    return _copy_of(delivery, headers, expiration_ms=outcome.delay_ms)


def dead_letter_message(delivery: Delivery, outcome: DeadLettered, attempt: int) -> OutgoingMessage:
    """The copy kept in ``Q.dlq``: original body and properties, the reason in headers."""
    headers = _carried_headers(delivery)
    headers[ERROR_TYPE_HEADER] = outcome.error_type
    headers[ERROR_MESSAGE_HEADER] = outcome.error_message[:MAX_ERROR_MESSAGE_CHARS]
    headers[ATTEMPT_HEADER] = attempt
    headers[FAILED_AT_HEADER] = datetime.now(UTC).isoformat()
    return _copy_of(delivery, headers)


def replay_message(delivery: Delivery) -> OutgoingMessage:
    """A dead letter sent back to the main queue as a fresh task (attempts reset)."""
    headers = {
        key: value
        for key, value in _carried_headers(delivery).items()
        if key not in (ERROR_TYPE_HEADER, ERROR_MESSAGE_HEADER, FAILED_AT_HEADER)
    }
    headers[ATTEMPT_HEADER] = 1
    return _copy_of(delivery, headers)


def reply_message(delivery: Delivery, outcome: Completed) -> OutgoingMessage:
    """The result sent to the ``reply_to`` queue, correlated with the request."""
    return OutgoingMessage(
        body=outcome.result_json,
        headers={ATTEMPT_HEADER: attempt_of(delivery)},
        message_id=delivery.message_id,
        correlation_id=delivery.correlation_id or delivery.message_id,
    )
