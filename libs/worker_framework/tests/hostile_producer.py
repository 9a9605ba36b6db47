"""A producer that sends what other AMQP clients may send and pika's encoder refuses.

pika cannot encode a float, a timestamp beyond year 9999 or an integer beyond 64 bits, but
RabbitMQ accepts the first two from other clients (a Java service sends doubles) and pika's
*decoder* turns them into values that break a naive copy. This publisher extends pika's
encoder, in the test process only, with :class:`Double` and :class:`RawTimestamp`; the worker
under test decodes them with its own, unchanged pika.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pika
import pika.data
from worker_framework.testing import amqp_url

_encode_value = pika.data.encode_value
_lock = threading.Lock()


@dataclass(frozen=True)
class Double:
    """An AMQP double (``d``); pika decodes it as a (possibly huge) int."""

    value: float


@dataclass(frozen=True)
class RawTimestamp:
    """An AMQP timestamp (``T``) of any unsigned 64-bit value, e.g. beyond year 9999."""

    seconds: int


def _extended_encode_value(pieces: list[bytes], value: Any) -> int:
    if isinstance(value, Double):
        pieces.append(struct.pack(">cd", b"d", value.value))
        return 9
    if isinstance(value, RawTimestamp):
        pieces.append(struct.pack(">cQ", b"T", value.seconds))
        return 9
    size: int = _encode_value(pieces, value)
    return size


@contextlib.contextmanager
def _extended_encoder() -> Iterator[None]:
    with _lock:
        pika.data.encode_value = _extended_encode_value
        try:
            yield
        finally:
            pika.data.encode_value = _encode_value


class HostileProducer:
    """Publishes raw messages with confirms: any headers, properties (str or bytes) and body."""

    def __init__(self) -> None:
        parameters = pika.URLParameters(amqp_url().split(",")[0])
        parameters.client_properties = {"connection_name": f"hostile-{uuid.uuid4().hex[:8]}"}
        self._connection = pika.BlockingConnection(parameters)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()

    def publish(
        self,
        queue: str,
        body: bytes,
        headers: Mapping[Any, Any] | None = None,
        **properties: Any,
    ) -> None:
        """Publish ``body`` to ``queue`` with ``headers`` and raw ``properties`` (message_id...)."""
        with _extended_encoder():
            self._channel.basic_publish(
                "",
                queue,
                body,
                pika.BasicProperties(headers=dict(headers) if headers else None, **properties),
                mandatory=True,
            )

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(pika.exceptions.AMQPError):
            self._connection.close()

    def __enter__(self) -> HostileProducer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
