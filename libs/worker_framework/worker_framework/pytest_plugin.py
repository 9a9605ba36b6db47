"""pytest fixtures for testing a worker against a real RabbitMQ, shipped with the framework.

Enable it with ``PYTEST_PLUGINS=worker_framework.pytest_plugin`` in the tests' environment (this
repository's root ``BUILD`` does that for every ``python_tests`` target), or with
``pytest_plugins = ["worker_framework.pytest_plugin"]`` in a top-level conftest.

Fixtures:

- ``client``: a :class:`~worker_framework.testing.QueueClient` on the test broker.
- ``unique_queue``: a queue name no other test uses.
- ``make_settings(**overrides)``: settings of ``worker_settings_model`` on a fresh queue with
  ``fast_retries``; every worker queue made is deleted after the test.
- ``reply_queue``: a queue that receives results through ``reply_to``, deleted afterwards.
- ``worker_thread(worker_cls, settings)``: a worker consuming in this process, stopped after.
- ``worker_process("pkg.main:main", *args, env=...)``: a worker in a subprocess, killed after.
- ``run_task(worker, task)``: one task run in this process, without a broker; returns a
  :class:`LocalRun` (the outcome, the result model, every progress update including the
  final status).

Override points (redefine the fixture in a conftest): ``worker_settings_model`` (the app's
settings class), ``fast_retries`` (the retry settings of every ``make_settings``).

A fixture that needs the broker skips the test with one line naming ``AMQP_URL`` when no broker
answers there, and fails it instead when ``CI`` is set: a CI run must not pass by skipping.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel
from shared_utils.redaction import redact_url

from worker_framework.errors import BrokerUnavailable
from worker_framework.outcomes import Completed, Outcome
from worker_framework.progress import ProgressUpdate
from worker_framework.retry_policy import RetryPolicy
from worker_framework.settings import WorkerSettings
from worker_framework.task_runner import TaskRunner
from worker_framework.testing import (
    QueueClient,
    RecordingReporter,
    WorkerProcess,
    WorkerThread,
    amqp_url,
    unique_queue_name,
    worker_settings,
)
from worker_framework.worker import BaseWorker

#: Short delays keep retry tests quick; the backoff formula is the same at any scale.
FAST_RETRIES: dict[str, Any] = {
    "worker_initial_delay_ms": 50,
    "worker_backoff_factor": 2.0,
    "worker_max_delay_ms": 1000,
    "worker_max_retries": 3,
}


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The test broker's URL (``AMQP_URL``), once it has answered; see the module docstring."""
    url = amqp_url()
    try:
        QueueClient(url).close()
    except BrokerUnavailable as error:
        where = redact_url(url)
        if os.environ.get("CI"):
            pytest.fail(f"no RabbitMQ answers at AMQP_URL={where} (CI is set): {error}")
        pytest.skip(f"no RabbitMQ answers at AMQP_URL={where}; set AMQP_URL to run this test")
    return url


@pytest.fixture
def client(rabbitmq_url: str) -> Iterator[QueueClient]:
    """A connection to the test broker for publishing tasks and reading queues."""
    with QueueClient(rabbitmq_url) as queue_client:
        yield queue_client


@pytest.fixture
def unique_queue() -> str:
    """A queue name no other test (or test run) uses."""
    return unique_queue_name("test")


@pytest.fixture
def worker_settings_model() -> type[WorkerSettings]:
    """The settings class ``make_settings`` builds: redefine it to return the app's own."""
    return WorkerSettings


@pytest.fixture
def fast_retries() -> dict[str, Any]:
    """Retry settings of every ``make_settings``: redefine it for other values."""
    return dict(FAST_RETRIES)


@pytest.fixture
def make_settings(
    client: QueueClient,
    worker_settings_model: type[WorkerSettings],
    fast_retries: dict[str, Any],
) -> Iterator[Callable[..., Any]]:
    """Build settings on a fresh queue; every worker queue made is deleted after the test."""
    made: list[WorkerSettings] = []

    def make(**overrides: Any) -> Any:
        values = {**fast_retries, "worker_queue": unique_queue_name("test"), **overrides}
        settings = worker_settings(worker_settings_model, **values)
        made.append(settings)
        return settings

    yield make
    for settings in made:
        client.delete_worker_queues(settings)


@pytest.fixture
def reply_queue(client: QueueClient) -> Iterator[str]:
    """A queue that receives task results through ``reply_to``."""
    name = client.declare_reply_queue()
    yield name
    client.delete_queue(name)


@pytest.fixture
def worker_thread(rabbitmq_url: str) -> Iterator[Callable[..., WorkerThread]]:
    """``worker_thread(worker_cls, settings, **options)``: a started :class:`WorkerThread`.

    Each one is stopped gracefully when the test ends.
    """
    started: list[WorkerThread] = []

    def start(
        worker_cls: type[BaseWorker[Any, Any]], settings: WorkerSettings, **options: Any
    ) -> WorkerThread:
        thread = WorkerThread(worker_cls, settings, **options).start()
        started.append(thread)
        return thread

    yield start
    for thread in reversed(started):
        thread.stop()


@pytest.fixture
def worker_process(rabbitmq_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """``worker_process("pkg.main:main", *args, env={...})``: a :class:`WorkerProcess`.

    Each one is killed (if still running) when the test ends.
    """
    with ExitStack() as started:

        def start(
            entry_point: str, *args: str, env: Mapping[str, str] | None = None
        ) -> WorkerProcess:
            environment = {"AMQP_URL": rabbitmq_url, **(env or {})}
            return started.enter_context(WorkerProcess(entry_point, *args, env=environment))

        yield start


@dataclass(frozen=True)
class LocalRun:
    """What :func:`run_task` saw: the outcome, the result (when completed) and the progress."""

    outcome: Outcome
    result: BaseModel | None
    updates: list[ProgressUpdate]


def run_task_locally(
    worker: BaseWorker[Any, Any],
    task: Mapping[str, Any] | bytes,
    *,
    attempt: int = 1,
    state: dict[str, Any] | None = None,
) -> LocalRun:
    """Run one task through the framework's task runner in this process, without a broker.

    ``worker`` is used as given (call its ``initialize()`` first if it needs one). The outcome
    is what the consumer would settle: completed, retry scheduled or dead-lettered.
    """
    body = task if isinstance(task, bytes) else json.dumps({"id": "local-task", **task}).encode()
    reporter = RecordingReporter()
    runner = TaskRunner(
        worker, reporter, RetryPolicy.from_settings(worker.settings), worker.queue_name()
    )
    run = runner.run(body, attempt=attempt, redelivered=False, state=state)
    final = runner.final_update(run)
    if final is not None:
        reporter.report(final)  # as the consumer does once the outcome is settled
    result = run.outcome.model if isinstance(run.outcome, Completed) else None
    return LocalRun(run.outcome, result, list(reporter.updates))


@pytest.fixture
def run_task() -> Callable[..., LocalRun]:
    """``run_task(worker, task, attempt=1, state=None)``: see :func:`run_task_locally`."""
    return run_task_locally
