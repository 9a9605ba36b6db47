"""Fixtures of the end-to-end tests: a task-api process and settings for the e2e worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import FAST_RETRIES
from task_api.testing import TaskApiServer
from worker_framework import WorkerSettings
from worker_framework.testing import (
    QueueClient,
    amqp_url,
    delete_worker_queues,
    unique_queue_name,
    worker_settings,
)


@pytest.fixture(scope="module")
def api() -> Iterator[TaskApiServer]:
    """A running task-api (SQLite) that publishes to the test broker."""
    with TaskApiServer(extra_env={"AMQP_URL": amqp_url()}) as server:
        yield server


@pytest.fixture
def client() -> Iterator[QueueClient]:
    """A connection to the test broker."""
    with QueueClient() as queue_client:
        yield queue_client


@pytest.fixture
def settings() -> Iterator[WorkerSettings]:
    """Settings of an e2e worker on fresh queues, deleted after the test."""
    made = worker_settings(WorkerSettings, worker_queue=unique_queue_name("e2e"), **FAST_RETRIES)
    yield made
    delete_worker_queues(made)
