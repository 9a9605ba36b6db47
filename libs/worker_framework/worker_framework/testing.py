"""Helpers for testing workers against a real RabbitMQ (``AMQP_URL``, default localhost).

Typical use in an app's tests::

    queue = unique_queue_name("email")
    settings = worker_settings(EmailSettings, worker_queue=queue)
    with QueueClient() as client, WorkerThread(EmailWorker, settings):
        reply_queue = client.declare_reply_queue()
        task_id = client.publish_task(queue, {"to": "a@example.org"}, reply_to=reply_queue)
        [reply] = client.wait_for_messages(reply_queue, 1)
        assert reply.json()["status"] == "sent"
    delete_worker_queues(settings)   # or client.delete_worker_queues(settings)

``WorkerProcess`` runs a worker's ``main`` in a subprocess (``[sys.executable, ...]`` with the
current ``sys.path``), for signals and crashes (``worker_framework.testing_processes``).
The pytest fixtures built on these helpers are in ``worker_framework.pytest_plugin``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from worker_framework.broker import BrokerConnection, Delivery, OutgoingMessage, QueueSpec
from worker_framework.inbound import ATTEMPT_HEADER
from worker_framework.observability import observed_consumer
from worker_framework.progress import LogReporter, ProgressReporter, ProgressUpdate
from worker_framework.settings import SettingsT, WorkerSettings, load_settings
from worker_framework.testing_processes import (
    DEFAULT_TEST_AMQP_URL,
    WorkerProcess,
    amqp_url,
    close_broker_connections,
    settings_env,
    subprocess_env,
)
from worker_framework.topology import worker_topology
from worker_framework.worker import BaseWorker

__all__ = [
    "DEFAULT_TEST_AMQP_URL",
    "QueueClient",
    "ReceivedMessage",
    "RecordingReporter",
    "WorkerProcess",
    "WorkerThread",
    "amqp_url",
    "close_broker_connections",
    "delete_worker_queues",
    "free_port",
    "settings_env",
    "subprocess_env",
    "unique_queue_name",
    "wait_for",
    "worker_settings",
]

T = TypeVar("T")


def unique_queue_name(prefix: str = "test") -> str:
    """A queue name no other test (or test run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (e.g. for ``worker_metrics_port``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.05, message: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises AssertionError (naming ``message``) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message or predicate}")
        time.sleep(interval)


def worker_settings(model: type[SettingsT] = WorkerSettings, **overrides: Any) -> SettingsT:  # type: ignore[assignment]
    """Settings for a test: the environment, the test broker, then ``overrides``."""
    overrides.setdefault("amqp_url", amqp_url())
    return load_settings(model, **overrides)


@dataclass(frozen=True)
class ReceivedMessage:
    """A message read from a queue by a test."""

    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    correlation_id: str | None
    redelivered: bool

    @classmethod
    def of(cls, delivery: Delivery) -> ReceivedMessage:
        """The test's view of ``delivery``."""
        return cls(
            delivery.body,
            dict(delivery.headers),
            delivery.message_id,
            delivery.correlation_id,
            delivery.redelivered,
        )

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> Any:
        """A header value, bytes decoded to str."""
        value = self.headers.get(name)
        return value.decode() if isinstance(value, bytes) else value


class QueueClient:
    """A connection for test code: publish tasks, read, count, purge and delete queues."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url or amqp_url()
        self._connection = BrokerConnection.connect(
            self._url.split(","), connection_name=f"test-client-{uuid.uuid4().hex[:8]}"
        )

    def __enter__(self) -> QueueClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def publish_task(
        self,
        queue: str,
        task: Mapping[str, Any] | bytes,
        *,
        attempt: int | None = 1,
        headers: Mapping[str, Any] | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Publish a task (a dict gets an ``id`` if missing; bytes go as-is); return its id."""
        if isinstance(task, bytes):
            body, task_id = task, uuid.uuid4().hex
        else:
            data = dict(task)
            task_id = str(data.setdefault("id", uuid.uuid4().hex))
            body = json.dumps(data).encode()
        all_headers = dict(headers or {})
        if attempt is not None:
            all_headers[ATTEMPT_HEADER] = attempt
        message = OutgoingMessage(
            body, all_headers, message_id=task_id, correlation_id=correlation_id, reply_to=reply_to
        )
        self._connection.publish(queue, message)
        return task_id

    def publish(self, queue: str, message: OutgoingMessage) -> None:
        """Publish ``message`` exactly as given (e.g. without a message id), with confirms."""
        self._connection.publish(queue, message)

    def declare_reply_queue(self, name: str | None = None) -> str:
        """Declare a queue for ``reply_to`` results; delete it with :meth:`delete_queue`."""
        queue = name or unique_queue_name("replies")
        self._connection.declare(QueueSpec(queue))
        return queue

    def message_count(self, queue: str) -> int:
        """Ready messages in ``queue`` (0 when it does not exist)."""
        return self._connection.message_count(queue) or 0

    def consumer_count(self, queue: str) -> int:
        """Consumers attached to ``queue`` (0 when it does not exist)."""
        return self._connection.consumer_count(queue)

    def get(self, queue: str) -> ReceivedMessage | None:
        """Remove and return the next message of ``queue``, or None."""
        delivery = self._connection.get(queue)
        if delivery is None:
            return None
        self._connection.ack(delivery)
        self._connection.process_events(0)  # send the ack now: tests look from other connections
        return ReceivedMessage.of(delivery)

    def peek(self, queue: str, limit: int = 1000) -> list[ReceivedMessage]:
        """Read up to ``limit`` messages of ``queue`` and leave them there."""
        found = []
        for _ in range(limit):
            delivery = self._connection.get(queue)
            if delivery is None:
                break
            found.append(ReceivedMessage.of(delivery))
        self._connection.release_unacked()
        return found

    def wait_for_messages(
        self, queue: str, count: int, timeout: float = 15.0
    ) -> list[ReceivedMessage]:
        """Remove and return ``count`` messages from ``queue``, waiting for them to arrive."""
        received: list[ReceivedMessage] = []

        def enough() -> bool:
            while len(received) < count:
                message = self.get(queue)
                if message is None:
                    return False
                received.append(message)
            return True

        wait_for(enough, timeout, message=f"{count} messages in {queue!r} (got {len(received)})")
        return received

    def purge(self, queue: str) -> int:
        """Empty ``queue``; return how many messages were removed."""
        return self._connection.purge(queue)

    def delete_queue(self, queue: str) -> None:
        """Delete ``queue`` if it exists."""
        self._connection.delete_queue(queue)

    def delete_worker_queues(self, settings: WorkerSettings, queue: str | None = None) -> None:
        """Delete the main, delay and dead-letter queues of the worker ``settings`` describe.

        The delay queues of the default retry settings go too: a CLI command or subprocess
        started without the test's retry variables declares those.
        """
        name = queue or settings.worker_queue
        if not name:
            raise ValueError("delete_worker_queues needs settings.worker_queue or queue=")
        defaults = WorkerSettings.model_construct()
        names = {spec.name for spec in worker_topology(name, settings)}
        names.update(spec.name for spec in worker_topology(name, defaults))
        for queue_name in sorted(names):
            self.delete_queue(queue_name)


def delete_worker_queues(settings: WorkerSettings, queue: str | None = None) -> None:
    """Delete a worker's queues (see :meth:`QueueClient.delete_worker_queues`)."""
    with QueueClient(settings.amqp_url) as client:
        client.delete_worker_queues(settings, queue)


class RecordingReporter(ProgressReporter):
    """Keeps every progress update in memory (and logs it), for assertions."""

    def __init__(self) -> None:
        self.updates: list[ProgressUpdate] = []
        self._lock = threading.Lock()
        self._log = LogReporter()

    def report(self, update: ProgressUpdate) -> None:
        """Record ``update``."""
        with self._lock:
            self.updates.append(update)
        self._log.report(update)

    def close(self, timeout_s: float) -> None:
        """Nothing to flush."""

    def for_task(self, task_id: str) -> list[ProgressUpdate]:
        """The updates of one task, in order."""
        with self._lock:
            return [update for update in self.updates if update.task_id == task_id]


class WorkerThread:
    """Runs a worker's consumer in a background thread of the test process.

    ``start()`` returns once the worker consumes; ``stop()`` stops it gracefully. With
    ``worker_metrics_port`` in the settings, ``endpoint`` serves its metrics and health as
    the ``run`` command would.
    """

    def __init__(
        self,
        worker_cls: type[BaseWorker[Any, Any]],
        settings: WorkerSettings,
        *,
        reporter: ProgressReporter | None = None,
        connection_name: str | None = None,
    ) -> None:
        self.worker = worker_cls(settings=settings)
        self.reporter = reporter or LogReporter()
        self.consumer, self.endpoint = observed_consumer(
            self.worker,
            settings,
            self.reporter,
            connection_name=connection_name or unique_queue_name("test-worker"),
        )
        self._thread = threading.Thread(target=self._run, name="test-worker-io", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.consumer.run()
        except BaseException as error:  # noqa: BLE001 - re-raised by start()/stop()
            self.error = error
        finally:
            self.worker.shutdown()

    def start(self, timeout: float = 15.0) -> WorkerThread:
        """Initialize the worker, start consuming, and wait until it does."""
        if self.endpoint is not None:
            self.endpoint.start()
        self.worker.initialize()
        self._thread.start()
        wait_for(
            lambda: self.consumer.consuming.is_set() or self.error is not None,
            timeout,
            message="worker consuming",
        )
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully and wait for the thread; re-raise what the consumer raised."""
        self.consumer.request_stop()
        self._thread.join(timeout)
        if self.endpoint is not None:
            self.endpoint.stop()
        if self._thread.is_alive():
            raise AssertionError(f"worker thread did not stop within {timeout}s")
        if self.error is not None:
            raise self.error

    def __enter__(self) -> WorkerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
