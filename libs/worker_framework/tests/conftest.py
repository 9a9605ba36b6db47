"""Shared fixtures: a test broker client and probe-worker settings with unique queues."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from worker_framework import WorkerSettings
from worker_framework.testing import QueueClient, unique_queue_name, worker_settings

#: Small delays keep retry tests quick; the formula is the same at any scale.
FAST_RETRIES: dict[str, Any] = {
    "worker_initial_delay_ms": 50,
    "worker_backoff_factor": 2.0,
    "worker_max_delay_ms": 1000,
    "worker_max_retries": 3,
}


@pytest.fixture
def client() -> Iterator[QueueClient]:
    """A connection to the test broker for publishing and reading messages."""
    with QueueClient() as queue_client:
        yield queue_client


@pytest.fixture
def make_settings(client: QueueClient) -> Iterator[Callable[..., WorkerSettings]]:
    """Build probe settings on a fresh queue; every queue made is deleted after the test."""
    made: list[WorkerSettings] = []

    def make(**overrides: Any) -> WorkerSettings:
        values = {**FAST_RETRIES, "worker_queue": unique_queue_name("fw-test"), **overrides}
        settings = worker_settings(WorkerSettings, **values)
        made.append(settings)
        return settings

    yield make
    for settings in made:
        client.delete_worker_queues(settings)


@pytest.fixture
def reply_queue(client: QueueClient) -> Iterator[str]:
    """A queue to receive results through ``reply_to``."""
    name = client.declare_reply_queue()
    yield name
    client.delete_queue(name)
