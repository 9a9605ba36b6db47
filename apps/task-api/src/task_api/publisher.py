"""Publishing submitted tasks to RabbitMQ with publisher confirms (the only module using pika)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel


class PublishError(Exception):
    """A task could not be handed to RabbitMQ; the message says why and what to do."""


class TaskPublisher:
    """Publishes task messages the way the framework expects them (DESIGN.md, "Messages").

    Persistent delivery, ``message_id`` = task id, ``content_type`` ``application/json``,
    header ``x-attempt`` = 1, ``mandatory`` so that a missing queue is an error rather than
    a silent drop, and a publisher confirm before returning. The queue is not declared here:
    its arguments (type, dead-lettering) belong to the worker that consumes it, and declaring
    it with different ones would fail with PRECONDITION_FAILED.

    One connection, owned under a lock: pika connections are not thread-safe.
    """

    def __init__(self, amqp_url: str, *, connection_name: str = "task-api") -> None:
        self._amqp_url = amqp_url
        self._connection_name = connection_name
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def _open_channel(self) -> BlockingChannel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        if self._connection is None or not self._connection.is_open:
            parameters = pika.URLParameters(self._amqp_url)
            # Named so that operators (and tests) can tell task-api's connection apart.
            parameters.client_properties = {"connection_name": self._connection_name}
            self._connection = pika.BlockingConnection(parameters)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        return self._channel

    def _drop_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                pass

    def publish(self, queue: str, task_id: str, payload: dict[str, Any]) -> None:
        """Publish ``payload`` to ``queue`` and wait for the broker's confirm."""
        body = json.dumps(payload).encode()
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=task_id,
            headers={"x-attempt": 1},
        )
        with self._lock:
            # An idle BlockingConnection misses heartbeats and is closed by the broker, so the
            # first publish after a quiet spell may find it dead: one fresh connection retries.
            for attempt in (1, 2):
                try:
                    channel = self._open_channel()
                    channel.basic_publish(
                        exchange="",
                        routing_key=queue,
                        body=body,
                        properties=properties,
                        mandatory=True,
                    )
                    return
                except pika.exceptions.UnroutableError as error:
                    raise PublishError(
                        f"queue '{queue}' does not exist: start a worker for it (workers declare"
                        " their queues) and submit again"
                    ) from error
                except pika.exceptions.NackError as error:
                    raise PublishError(f"RabbitMQ refused the task for queue '{queue}'") from error
                except (pika.exceptions.AMQPError, OSError) as error:
                    self._drop_connection()
                    if attempt == 2:
                        raise PublishError(
                            f"RabbitMQ is unreachable ({type(error).__name__}); the task was not"
                            " queued, submit again"
                        ) from error

    def close(self) -> None:
        """Close the connection to RabbitMQ."""
        with self._lock:
            self._drop_connection()
