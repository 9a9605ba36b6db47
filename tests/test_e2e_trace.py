"""End to end, one trace id: submitTask -> the queued message -> the worker's JSON log lines ->
the retry copy -> task-api's record of the completed task."""

from __future__ import annotations

import json
import uuid
from typing import Any

from e2e_progress_worker import E2EWorker
from task_api.testing import TaskApiServer, fetch_task
from worker_framework.graphql_reporter import GraphQLReporter
from worker_framework.retry_policy import retry_queue_name
from worker_framework.testing import (
    QueueClient,
    WorkerProcess,
    WorkerThread,
    settings_env,
    wait_for,
)
from worker_framework.topology import connect, declare_topology

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
#: Long enough to read the retry copy in its delay queue before it returns, short for a test.
RETRY_DELAY_MS = 4000
#: Waits for work done by a worker process and task-api; generous for a loaded CI machine.
WAIT_S = 30.0
#: How long a closing reporter may flush.
FLUSH_S = 15.0
SUBMIT = """
mutation Submit($queue: String!, $payload: JSON!) {
  submitTask(queue: $queue, payload: $payload) { id traceId }
}
"""


def submit_in_trace(api: TaskApiServer, queue: str, payload: dict[str, Any]) -> dict[str, Any]:
    body = api.graphql(
        SUBMIT, {"queue": queue, "payload": payload}, headers={"traceparent": CALLER}
    )
    assert "errors" not in body, body
    submitted: dict[str, Any] = body["data"]["submitTask"]
    return submitted


def task_reaches(api: TaskApiServer, task_id: str, status: str) -> dict[str, Any]:
    """Wait until ``task(id)`` has ``status`` and return the task."""

    def reached() -> dict[str, Any] | None:
        task = fetch_task(api.url, task_id)
        return task if task is not None and task["status"] == status else None

    task = wait_for(reached, WAIT_S, message=f"task {task_id} {status}")
    assert task is not None
    return task


def retry_copy(client: QueueClient, queue: str) -> Any:
    """The task's copy waiting in its delay queue (left there)."""

    def waiting() -> Any:
        copies = client.peek(retry_queue_name(queue, RETRY_DELAY_MS))
        return copies[0] if copies else None

    return wait_for(waiting, WAIT_S, message="the retry copy in its delay queue")


def test_one_trace_id_from_submit_task_through_the_worker_and_a_retry_to_completed(
    api, client, make_settings
):
    settings = make_settings(
        worker_initial_delay_ms=RETRY_DELAY_MS, worker_max_delay_ms=RETRY_DELAY_MS
    )
    queue = settings.worker_queue
    # The worker's queues exist before it runs, so the submitted message waits to be read.
    connection = connect(settings, "test-e2e-trace")
    try:
        declare_topology(connection, queue, settings)
    finally:
        connection.close()

    submitted = submit_in_trace(api, queue, {"steps": 2, "fail_times": 1})
    task_id = submitted["id"]
    [queued] = client.peek(queue)

    env = {**settings_env(settings), "LOG_FORMAT": "json", "GRAPHQL_URL": api.url}
    with WorkerProcess("e2e_progress_worker:main", "run", env=env) as worker:
        copy = retry_copy(client, queue)
        done = task_reaches(api, task_id, "COMPLETED")
        output = worker.output()

    assert submitted["traceId"] == TRACE_ID
    assert queued.header("traceparent") == CALLER
    assert copy.header("traceparent") == CALLER
    assert copy.header("x-attempt") == 2
    assert done["traceId"] == TRACE_ID
    assert done["attempt"] == 2
    assert "RETRY_SCHEDULED" in [entry["status"] for entry in done["history"]]
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    of_task = [line for line in lines if line.get("task_id") == task_id]
    assert any(line["message"].startswith("task failed (transient)") for line in of_task)
    assert {line.get("trace_id") for line in of_task} == {TRACE_ID}


def test_a_task_published_without_task_api_gets_its_trace_id_from_the_workers_reports(
    api, client, make_settings
):
    settings = make_settings()
    reporter = GraphQLReporter(api.url, None)
    with WorkerThread(E2EWorker, settings, reporter=reporter):
        task_id = client.publish_task(
            settings.worker_queue,
            {"id": f"e2e-{uuid.uuid4().hex}", "steps": 1},
            headers={"traceparent": CALLER},
        )
        task_reaches(api, task_id, "COMPLETED")
    reporter.close(FLUSH_S)

    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["traceId"] == TRACE_ID
