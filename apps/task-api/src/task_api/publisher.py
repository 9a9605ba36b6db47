"""Publishing submitted tasks to RabbitMQ, through the framework's broker adapter.

task-api does not use pika itself: :mod:`worker_framework.broker`, the one adapter of the
client library, owns the connection to the nodes of ``AMQP_URL``, publisher confirms,
``mandatory`` and the translation of the client's errors. This module only turns the
adapter's errors into messages a person submitting a task can act on.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from loguru import logger
from worker_framework.broker import BrokerConnection, OutgoingMessage
from worker_framework.errors import BrokerUnavailable, PublishFailed
from worker_framework.tracing import TRACEPARENT_HEADER


class PublishError(Exception):
    """A task may not have reached RabbitMQ (unreachable, connection lost before the confirm).

    The message says why and what to do. The task may still have been queued: a broker that
    received it and lost the connection before confirming is indistinguishable from one that
    never got it.
    """


class PublishRefused(PublishError):
    """RabbitMQ answered that it did not queue the task (no such queue, or a nack)."""


class TaskPublisher:
    """Publishes task messages the way the framework's consumers expect them.

    Persistent delivery, ``message_id`` = task id, ``content_type`` ``application/json``,
    headers ``x-attempt`` = 1 and ``traceparent``, ``mandatory`` so that a missing queue is an
    error rather than a silent drop, and a publisher confirm before returning. The queue is not
    declared here: its arguments (type, dead-lettering) belong to the worker that consumes it,
    and declaring it with different ones would fail with PRECONDITION_FAILED.

    ``amqp_urls`` are tried in order, like a worker's ``AMQP_URL`` nodes. One connection,
    used under a lock: a connection is not thread-safe and requests run on several threads.
    """

    def __init__(self, amqp_urls: list[str], *, connection_name: str = "task-api") -> None:
        self._amqp_urls = list(amqp_urls)
        self._connection_name = connection_name
        self._lock = threading.Lock()
        self._connection: BrokerConnection | None = None

    def _connected(self) -> BrokerConnection:
        # A dead connection is found by the publish that fails on it (BrokerUnavailable), which
        # drops it; the next call connects afresh.
        if self._connection is None:
            # Named so that operators (and tests) can tell task-api's connection apart.
            self._connection = BrokerConnection.connect(
                self._amqp_urls, connection_name=self._connection_name
            )
        return self._connection

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def publish(
        self, queue: str, task_id: str, payload: dict[str, Any], traceparent: str | None = None
    ) -> None:
        """Publish ``payload`` to ``queue`` (in the W3C trace context ``traceparent``) and wait
        for the broker's confirm.

        Raises :class:`PublishRefused` when the broker refused the task, and
        :class:`PublishError` when it may not have been queued. A connection found dead is
        replaced once and the publish sent again: when the first one reached the broker before
        the connection died, the task is queued twice with the same ``message_id`` (workers
        are idempotent by task id).
        """
        headers: dict[str, Any] = {"x-attempt": 1}
        if traceparent is not None:
            headers[TRACEPARENT_HEADER] = traceparent
        message = OutgoingMessage(
            body=json.dumps(payload).encode(),
            headers=headers,
            message_id=task_id,
            content_type="application/json",
        )
        with self._lock:
            # An idle connection misses heartbeats and is closed by the broker, so the first
            # publish after a quiet spell may find it dead: one fresh connection retries.
            for attempt in (1, 2):
                try:
                    connection = self._connected()
                    connection.publish(queue, message)
                    return
                except PublishFailed as error:
                    raise PublishRefused(self._refusal(queue)) from error
                except BrokerUnavailable as error:
                    self._drop_connection()
                    if attempt == 2:
                        # The adapter's message names the nodes with credentials redacted.
                        logger.warning("publishing to {} failed: {}", queue, error)
                        raise PublishError(
                            "RabbitMQ is unreachable; the task is not queued yet"
                        ) from error

    def _refusal(self, queue: str) -> str:
        """Why the broker refused a publish: usually the queue does not exist (unroutable)."""
        try:
            missing = not self._connected().queue_exists(queue)
        except BrokerUnavailable:
            missing = False
        if missing:
            return (
                f"queue '{queue}' does not exist: start a worker for it (workers declare"
                " their queues) and submit again"
            )
        return f"RabbitMQ refused the task for queue '{queue}'; the task was not queued"

    def close(self) -> None:
        """Close the connection to RabbitMQ."""
        with self._lock:
            self._drop_connection()
