"""The RabbitMQ adapter (with ``header_decoding`` and ``publish_pipeline``: all that imports pika).

Everything else talks to :class:`BrokerConnection`, which wraps one pika ``BlockingConnection``
owned by one thread (pika connections are not thread-safe); other threads may only call
:meth:`BrokerConnection.call_soon_threadsafe`. pika's exceptions become
:mod:`worker_framework.errors`, so a change of client touches these three files only.
Publishes use publisher confirms and ``mandatory=True``: :meth:`BrokerConnection.publish`
returns once RabbitMQ has taken responsibility for the message and raises
:class:`PublishFailed` when it was nacked or unroutable; :meth:`BrokerConnection.publish_many`
keeps many confirms in flight and reports each message not confirmed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties
from shared_utils.redaction import redact_url

from worker_framework import header_decoding
from worker_framework.errors import (
    BrokerUnavailable,
    PublishFailed,
    TopologyMismatch,
)
from worker_framework.header_decoding import UNDECODABLE_HEADERS as UNDECODABLE_HEADERS
from worker_framework.logging import redact
from worker_framework.publish_pipeline import check_encodable, properties_for, publish_pipelined

#: AMQP reply code for "declared with different arguments than the existing queue".
PRECONDITION_FAILED = 406
#: AMQP reply code for "no such queue".
NOT_FOUND = 404
#: Give up on a connection the broker keeps blocked (memory or disk alarm) after this long: the
#: consumer reconnects instead of hanging forever in a publish.
BLOCKED_CONNECTION_TIMEOUT_S = 120


@dataclass(slots=True)
class Delivery:
    """One message received from a queue, with the channel it must be settled on.

    The fields are the producer's, as pika decoded them (bytes where text was not UTF-8, ints
    of any size, ...): read them through :func:`worker_framework.inbound.normalise`.
    """

    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    correlation_id: str | None
    reply_to: str | None
    content_type: str | None
    redelivered: bool
    delivery_tag: int
    channel: Any = field(repr=False)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A persistent message to publish; ``expiration_ms`` sets a per-message TTL."""

    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    content_type: str | None = "application/json"
    expiration_ms: int | None = None


@dataclass(frozen=True)
class QueueSpec:
    """A durable queue and the arguments it is always declared with."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


header_decoding.install()


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    """Turn pika's exceptions into the framework's, with a message a person can act on."""
    try:
        yield
    except pika.exceptions.UnroutableError as error:
        raise PublishFailed(f"{action}: message could not be routed to a queue") from error
    except pika.exceptions.NackError as error:
        raise PublishFailed(f"{action}: broker refused the message (nack)") from error
    except pika.exceptions.ChannelClosedByBroker as error:
        raise BrokerUnavailable(
            f"{action}: channel closed by broker ({error.reply_code} {error.reply_text})"
        ) from error
    except (pika.exceptions.AMQPError, OSError) as error:
        raise BrokerUnavailable(f"{action}: {redact(repr(error))}") from error


def describe_nodes(urls: list[str]) -> str:
    """The broker nodes for a log line, credentials redacted."""
    return ", ".join(redact_url(url) for url in urls)


def _delivery(
    channel: BlockingChannel, method: Any, properties: BasicProperties, body: bytes
) -> Delivery:
    """A :class:`Delivery` from what pika hands over (``method``: Deliver or GetOk)."""
    return Delivery(
        body,
        properties.headers or {},
        properties.message_id,
        properties.correlation_id,
        properties.reply_to,
        properties.content_type,
        bool(method.redelivered),
        method.delivery_tag,
        channel,
    )


class BrokerConnection:
    """One connection to RabbitMQ with a consuming channel and a confirming publisher channel."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self._connection = connection
        self._publisher: BlockingChannel | None = None
        self._consumer: BlockingChannel | None = None
        self._consumer_tag: str | None = None
        self._reader: BlockingChannel | None = None
        self.consumer_cancelled_by_broker = False
        #: The pending timer of :meth:`wait_for_events`, if one is armed.
        self._tick: object | None = None

    @classmethod
    def connect(
        cls, urls: list[str], *, heartbeat_s: int = 60, connection_name: str | None = None
    ) -> BrokerConnection:
        """Connect to the first reachable node among ``urls``; raise :class:`BrokerUnavailable`."""
        parameters = []
        for url in urls:
            try:
                params = pika.URLParameters(url)
            except Exception as error:  # noqa: BLE001 - pika raises assorted errors on bad URLs
                reason = f"invalid AMQP_URL {redact_url(url)}: {redact(str(error))}"
                raise BrokerUnavailable(reason) from None
            params.heartbeat = heartbeat_s
            params.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT_S
            if connection_name:
                params.client_properties = {"connection_name": connection_name}
            parameters.append(params)
        action = f"connecting to {describe_nodes(urls)}"
        with _translated(action):
            try:
                return cls(pika.BlockingConnection(parameters))
            except ValueError as error:
                # pika lets this escape when the peer closes the socket between the TCP connect
                # and its first use ("Expected connected socket"): a lost connection, not a bug.
                raise BrokerUnavailable(f"{action}: {redact(repr(error))}") from error

    # -- state ---------------------------------------------------------------------------------

    def consuming_channel_is_open(self) -> bool:
        """False once the broker closed the channel deliveries come from."""
        return self._consumer is not None and bool(self._consumer.is_open)

    def owns(self, delivery: Delivery) -> bool:
        """Whether ``delivery`` can still be settled here: its channel is ours and open."""
        channel = delivery.channel
        return (
            channel is not None
            and channel in (self._consumer, self._reader)
            and bool(channel.is_open)
        )

    # -- topology ------------------------------------------------------------------------------

    def declare(self, spec: QueueSpec) -> None:
        """Declare a durable queue; raise TopologyMismatch if it exists with other arguments."""
        channel = self._connection.channel()
        try:
            channel.queue_declare(spec.name, durable=True, arguments=dict(spec.arguments) or None)
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code == PRECONDITION_FAILED:
                raise TopologyMismatch(
                    f"queue {spec.name!r} already exists with different arguments than "
                    f"{dict(spec.arguments)!r} ({error.reply_text}). Delete the queue (after "
                    "moving its messages) or change WORKER_QUEUE / WORKER_QUEUE_TYPE to match."
                ) from None
            raise BrokerUnavailable(f"declaring queue {spec.name!r}: {error.reply_text}") from error
        except (pika.exceptions.AMQPError, OSError) as error:
            raise BrokerUnavailable(
                f"declaring queue {spec.name!r}: {redact(repr(error))}"
            ) from error
        with _translated("closing declare channel"):
            if channel.is_open:
                channel.close()

    def queue_exists(self, name: str) -> bool:
        """Whether a queue named ``name`` exists (passive declare on a throwaway channel)."""
        return self.message_count(name) is not None

    def message_count(self, name: str) -> int | None:
        """Ready messages in queue ``name``, or None when it does not exist."""
        counts = self._counts(name)
        return None if counts is None else counts[0]

    def consumer_count(self, name: str) -> int:
        """Consumers attached to queue ``name`` (0 when it does not exist)."""
        counts = self._counts(name)
        return 0 if counts is None else counts[1]

    def _counts(self, name: str) -> tuple[int, int] | None:
        with _translated(f"inspecting queue {name!r}"):
            channel = self._connection.channel()
            try:
                frame = channel.queue_declare(name, passive=True)
            except pika.exceptions.ChannelClosedByBroker as error:
                if error.reply_code == NOT_FOUND:
                    return None
                raise
            channel.close()
            return int(frame.method.message_count), int(frame.method.consumer_count)

    def purge(self, name: str) -> int:
        """Delete every ready message of queue ``name``; return how many."""
        with _translated(f"purging queue {name!r}"):
            channel = self._connection.channel()
            frame = channel.queue_purge(name)
            channel.close()
            return int(frame.method.message_count)

    def delete_queue(self, name: str) -> None:
        """Delete queue ``name`` if it exists."""
        with _translated(f"deleting queue {name!r}"):
            channel = self._connection.channel()
            channel.queue_delete(name)
            channel.close()

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, routing_key: str, message: OutgoingMessage) -> None:
        """Publish through the default exchange and wait for the broker's confirm.

        Raises :class:`UnencodableMessage` (nothing sent, the connection intact) when the
        properties cannot be encoded or do not fit in one frame, :class:`PublishFailed` when the
        broker refuses the message, :class:`BrokerUnavailable` when the connection fails.
        """
        properties = properties_for(message)
        check_encodable(routing_key, properties, int(self._connection._impl.params.frame_max))
        with _translated(f"publishing to {routing_key!r}"):
            if self._publisher is None or not self._publisher.is_open:
                self._publisher = self._connection.channel()
                self._publisher.confirm_delivery()
            self._publisher.basic_publish("", routing_key, message.body, properties, mandatory=True)

    def publish_many(self, routing_key: str, messages: Sequence[OutgoingMessage]) -> dict[int, str]:
        """Publish ``messages`` with many confirms in flight at once (not a round trip each).

        Returns the messages the broker did not confirm, by index, with the reason (refused,
        unroutable, unencodable, the connection lost first); empty when all were confirmed.
        """
        return publish_pipelined(self._connection, routing_key, messages)

    # -- consuming -----------------------------------------------------------------------------

    def consume(self, queue: str, prefetch: int, on_delivery: Callable[[Delivery], None]) -> None:
        """Start delivering messages of ``queue`` to ``on_delivery`` (called on this thread)."""

        def on_message(
            channel: BlockingChannel,
            method: Basic.Deliver,
            properties: BasicProperties,
            body: bytes,
        ) -> None:
            on_delivery(_delivery(channel, method, properties, body))

        def on_cancel(_frame: Any) -> None:
            self.consumer_cancelled_by_broker = True

        with _translated(f"consuming from {queue!r}"):
            self._consumer = self._connection.channel()
            self._consumer.basic_qos(prefetch_count=prefetch)
            self._consumer.add_on_cancel_callback(on_cancel)
            self._consumer_tag = self._consumer.basic_consume(queue, on_message, auto_ack=False)

    def stop_consuming(self) -> None:
        """Ask the broker for no more deliveries; unsettled ones stay ours to settle."""
        if self._consumer is not None and self._consumer.is_open and self._consumer_tag:
            with _translated("cancelling consumer"):
                self._consumer.basic_cancel(self._consumer_tag)
            self._consumer_tag = None

    def ack(self, delivery: Delivery, *, multiple: bool = False) -> bool:
        """Acknowledge ``delivery`` (with ``multiple``, every earlier unacknowledged delivery on
        its channel too); False (and nothing sent) if its channel is gone."""
        if not self.owns(delivery):
            return False
        with _translated("acknowledging"):
            # The underlying channel only queues the ack frame; the I/O loop writes it at its
            # next pass. BlockingChannel.basic_ack would write it at once: a syscall, and with
            # it a chance for a task thread to take the GIL.
            delivery.channel._impl.basic_ack(delivery.delivery_tag, multiple)
        return True

    def requeue(self, delivery: Delivery) -> bool:
        """Return ``delivery`` to its queue; False (and nothing sent) if its channel is gone."""
        if not self.owns(delivery):
            return False
        with _translated("requeueing"):
            delivery.channel.basic_nack(delivery.delivery_tag, requeue=True)
        return True

    def get(self, queue: str) -> Delivery | None:
        """Take one message from ``queue`` without acknowledging it (None when empty).

        Unacknowledged messages return to the queue on :meth:`release_unacked` or close.
        """
        with _translated(f"reading from {queue!r}"):
            if self._reader is None or not self._reader.is_open:
                self._reader = self._connection.channel()
            method, properties, body = self._reader.basic_get(queue, auto_ack=False)
            if method is None:
                return None
            return _delivery(self._reader, method, properties, body)

    def release_unacked(self) -> None:
        """Return every message taken with :meth:`get` and not acknowledged to its queue."""
        if self._reader is not None and self._reader.is_open:
            with _translated("releasing messages"):
                self._reader.close()
        self._reader = None

    # -- the I/O loop --------------------------------------------------------------------------

    def process_events(self, time_limit: float) -> None:
        """Service the connection (heartbeats, deliveries, callbacks) for up to ``time_limit`` s."""
        with _translated("servicing connection"):
            self._connection.process_data_events(time_limit=time_limit)

    def wait_for_events(self, tick_s: float) -> None:
        """Service the connection until something is dispatched, or at most ``tick_s`` s.

        Returns after a delivery, a :meth:`call_soon_threadsafe` callback or a broker event
        has been handled, and at least every ``tick_s``. Unlike ``process_events``, which
        arms and cancels a timer on every call (pika keeps cancelled timers in its heap, whose
        comparisons are Python calls), one timer serves every call until it fires: the
        consuming loop turns several thousand times a second under load.
        """
        if self._tick is None:
            self._tick = self._connection.call_later(tick_s, self._tick_fired)
        with _translated("servicing connection"):
            self._connection.process_data_events(time_limit=None)

    def _tick_fired(self) -> None:
        self._tick = None

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> bool:
        """Run ``callback`` on the connection's thread; False if the connection is closed."""
        try:
            self._connection.add_callback_threadsafe(callback)
        except (pika.exceptions.AMQPError, OSError):
            return False
        return True

    def close(self) -> None:
        """Close the connection; unacknowledged deliveries return to their queues."""
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            if self._connection.is_open:
                self._connection.close()
