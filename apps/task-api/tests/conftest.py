"""Shared fixtures: real task-api processes on SQLite and PostgreSQL, and a RabbitMQ channel."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import psycopg
import pytest
from psycopg import sql
from task_api.testing import TaskApiServer

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
#: A database the tests may connect to in order to create (and drop) their own database.
POSTGRES_ADMIN_URL = os.environ.get(
    "TASK_API_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _url_for_database(admin_url: str, database: str) -> str:
    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The real RabbitMQ the tests use (``AMQP_URL``)."""
    return AMQP_URL


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """Where the tests may create and drop databases (``TASK_API_TEST_POSTGRES_URL``)."""
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped after the session."""
    name = f"task_api_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _url_for_database(POSTGRES_ADMIN_URL, name)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest) -> Iterator[TaskApiServer]:
    """A running task-api (open, no tokens), once per storage back end."""
    database_url = None
    if request.param == "postgresql":
        database_url = request.getfixturevalue("postgres_database_url")
    with TaskApiServer(database_url=database_url, extra_env={"AMQP_URL": AMQP_URL}) as server:
        yield server


@pytest.fixture
def task_id() -> str:
    """A task id no other test uses."""
    return f"t-{uuid.uuid4().hex}"


@pytest.fixture
def rabbit_channel() -> Iterator[Any]:
    """A channel on the real RabbitMQ."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        yield connection.channel()
    finally:
        connection.close()


@pytest.fixture
def queue_name(rabbit_channel: Any) -> Iterator[str]:
    """A fresh durable queue, deleted after the test."""
    name = f"task-api-test-{uuid.uuid4().hex[:12]}"
    rabbit_channel.queue_declare(queue=name, durable=True)
    try:
        yield name
    finally:
        rabbit_channel.queue_delete(queue=name)
