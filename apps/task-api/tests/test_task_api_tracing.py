"""Trace ids in task-api: the message's traceparent, the stored trace id, queries and the page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import requests
from psycopg import sql
from task_api.sql_dialects import Dialect, dialect_for
from task_api.sql_store import SqlTaskStore
from task_api.testing import TaskApiServer, fetch_task
from worker_framework.tracing import parse_traceparent

SUBMIT = """
mutation Submit($queue: String!, $payload: JSON!, $id: ID) {
  submitTask(queue: $queue, payload: $payload, id: $id) { id traceId }
}
"""
REPORT = """
mutation Report($input: TaskProgressInput!) {
  reportTaskProgress(input: $input) { id status traceId }
}
"""
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def published_traceparent(channel: Any, queue: str) -> str:
    """The ``traceparent`` header of the one message in ``queue`` (removed)."""
    method, properties, _body = channel.basic_get(queue=queue, auto_ack=True)
    assert method is not None, f"no message in {queue}"
    value = properties.headers["traceparent"]
    return value.decode() if isinstance(value, bytes) else str(value)


def trace_id_of(api: TaskApiServer, task_id: str) -> str | None:
    task = fetch_task(api.url, task_id)
    assert task is not None
    trace_id: str | None = task["traceId"]
    return trace_id


def submit(api: TaskApiServer, queue: str, task_id: str, **headers: str) -> dict[str, Any]:
    body = api.graphql(SUBMIT, {"queue": queue, "payload": {}, "id": task_id}, headers=headers)
    assert "errors" not in body, body
    submitted: dict[str, Any] = body["data"]["submitTask"]
    return submitted


def report(api: TaskApiServer, task_id: str, **extra: Any) -> dict[str, Any]:
    values = {"taskId": task_id, "workerType": "w", "status": "PROCESSING", "attempt": 1}
    return api.graphql(REPORT, {"input": {**values, **extra}})


def test_a_submission_without_traceparent_starts_a_trace_on_the_message_and_the_task(
    api, rabbit_channel, queue_name, task_id
):
    submitted = submit(api, queue_name, task_id)

    trace = parse_traceparent(published_traceparent(rabbit_channel, queue_name))
    assert trace is not None
    assert submitted["traceId"] == trace.trace_id
    assert trace_id_of(api, task_id) == trace.trace_id


def test_a_submission_keeps_the_callers_valid_traceparent(api, rabbit_channel, queue_name, task_id):
    submitted = submit(api, queue_name, task_id, traceparent=CALLER)

    # Without an OTLP endpoint no span is made: the caller's span is the message's parent.
    assert published_traceparent(rabbit_channel, queue_name) == CALLER
    assert submitted["traceId"] == CALLER_TRACE_ID


@pytest.mark.parametrize(
    "hostile",
    [
        CALLER.upper(),  # uppercase hex
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        CALLER + "-extra",  # version 00 with more fields
        CALLER[:-1],  # too short
        "x" * 5000,  # long garbage
        "\u00ff\u00fe\t-0",  # not ASCII, a tab
    ],
)
def test_a_submission_with_an_invalid_traceparent_starts_a_new_trace(
    api, rabbit_channel, queue_name, task_id, hostile
):
    submitted = submit(api, queue_name, task_id, traceparent=hostile.encode("latin-1"))

    trace = parse_traceparent(published_traceparent(rabbit_channel, queue_name))
    assert trace is not None
    assert trace.trace_id != CALLER_TRACE_ID
    assert submitted["traceId"] == trace.trace_id


def test_a_report_sets_the_trace_id_of_a_task_that_has_none(api, task_id):
    body = report(api, task_id, traceId=CALLER_TRACE_ID)

    assert "errors" not in body, body
    assert body["data"]["reportTaskProgress"]["traceId"] == CALLER_TRACE_ID
    assert trace_id_of(api, task_id) == CALLER_TRACE_ID


def test_a_report_does_not_replace_the_trace_id_a_task_has(
    api, rabbit_channel, queue_name, task_id
):
    submitted = submit(api, queue_name, task_id)
    other = uuid.uuid4().hex

    body = report(api, task_id, traceId=other)

    assert "errors" not in body, body
    assert trace_id_of(api, task_id) == submitted["traceId"] != other


def test_a_report_without_trace_id_leaves_it_unset(api, task_id):
    report(api, task_id)

    assert trace_id_of(api, task_id) is None


@pytest.mark.parametrize("bad", [CALLER_TRACE_ID.upper(), "0" * 32, "abc", CALLER])
def test_a_report_with_a_malformed_trace_id_is_refused_and_changes_nothing(api, task_id, bad):
    body = report(api, task_id, traceId=bad)

    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["fields"] == ["traceId"]
    assert fetch_task(api.url, task_id) is None


def test_the_page_shows_the_trace_id(api, task_id):
    report(api, task_id, traceId=CALLER_TRACE_ID)

    page = requests.get(f"{api.base_url}/", timeout=30)

    assert page.status_code == 200
    assert f"<code>{CALLER_TRACE_ID}</code>" in page.text


def test_a_database_of_the_previous_schema_gains_the_trace_id_column(tmp_path, postgres_admin_url):
    """The migration adds ``trace_id`` to existing rows (null) on SQLite and PostgreSQL."""
    database = f"task_api_old_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        postgres_url = f"{postgres_admin_url.rsplit('/', 1)[0]}/{database}"
        for url in (f"sqlite:///{tmp_path / 'old.db'}", postgres_url):
            dialect = dialect_for(url)
            task_id = create_schema_version_2_with_a_task(dialect)

            store = SqlTaskStore(dialect)
            store.migrate()
            state = store.get(task_id)
            submitted, _ = store.record_submission(
                "new", "q", {}, datetime.now(UTC), lease_until=0, trace_id=CALLER_TRACE_ID
            )
            store.close()

            assert state is not None
            assert state.trace_id is None
            assert submitted.trace_id == CALLER_TRACE_ID
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )


def create_schema_version_2_with_a_task(dialect: Dialect) -> str:
    """The schema task-api had before trace ids, holding one task; the task's id."""
    conn = dialect.connect()
    try:
        conn.execute(dialect.sql("CREATE TABLE task_api_schema (version INTEGER NOT NULL)"))
        for version, statements in enumerate(dialect.migrations()[:2], start=1):
            for statement in statements:
                conn.execute(dialect.sql(statement))
            conn.execute(
                dialect.sql("INSERT INTO task_api_schema (version) VALUES (?)"), (version,)
            )
        task_id = f"old-{uuid.uuid4().hex}"
        stamp = dialect.to_db_time(datetime.now(UTC))
        conn.execute(
            dialect.sql(
                "INSERT INTO task_api_tasks (id, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?)"
            ),
            (task_id, "QUEUED", stamp, stamp),
        )
        return task_id
    finally:
        conn.close()
