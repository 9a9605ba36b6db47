"""Fixtures of the end-to-end tests: a task-api process and settings for the e2e worker.

The broker client and settings factory come from the framework's pytest plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from task_api.testing import TaskApiServer
from worker_framework import WorkerSettings


@pytest.fixture(scope="module")
def api(rabbitmq_url: str) -> Iterator[TaskApiServer]:
    """A running task-api (SQLite) that publishes to the test broker."""
    with TaskApiServer(extra_env={"AMQP_URL": rabbitmq_url}) as server:
        yield server


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> WorkerSettings:
    """Settings of an e2e worker on fresh queues (fast retries), deleted after the test."""
    made: WorkerSettings = make_settings()
    return made
