"""End to end: task-api -> RabbitMQ -> a framework worker -> progress back in task-api."""

from __future__ import annotations

import signal
import threading
import uuid
from datetime import datetime
from typing import Any

from e2e_progress_worker import GATES, E2EWorker
from e2e_support import TeeReporter
from task_api.testing import TaskApiServer, fetch_task, free_port
from worker_framework.graphql_reporter import GraphQLReporter
from worker_framework.testing import QueueClient, WorkerProcess, WorkerThread, wait_for

SUBMIT = """
mutation Submit($queue: String!, $payload: JSON!) {
  submitTask(queue: $queue, payload: $payload) { id status }
}
"""
#: Waits for work done by a worker and a sender thread; generous for a loaded CI machine.
WAIT_S = 30.0
#: How long a closing reporter may flush in these tests.
FLUSH_S = 15.0


def submit(api: TaskApiServer, queue: str, payload: dict[str, Any]) -> str:
    body = api.graphql(SUBMIT, {"queue": queue, "payload": payload})
    assert "errors" not in body, body
    assert body["data"]["submitTask"]["status"] == "QUEUED"
    task_id: str = body["data"]["submitTask"]["id"]
    return task_id


def task_when(api: TaskApiServer, task_id: str, field: str, value: Any) -> dict[str, Any]:
    """Wait until ``task(id)`` shows ``field`` == ``value`` and return the task."""

    def reached() -> dict[str, Any] | None:
        task = fetch_task(api.url, task_id, token=api.tokens[0] if api.tokens else None)
        return task if task is not None and task[field] == value else None

    task = wait_for(reached, WAIT_S, message=f"task {task_id} {field}={value}")
    assert task is not None
    return task


def task_reaches(api: TaskApiServer, task_id: str, status: str) -> dict[str, Any]:
    """Wait until ``task(id)`` has ``status`` and return the task."""
    return task_when(api, task_id, "status", status)


def test_a_submitted_task_shows_processing_then_its_steps_then_completed_with_result(api, settings):
    gate = uuid.uuid4().hex
    GATES[gate] = threading.Event()
    reporter = GraphQLReporter(api.url, None)
    with WorkerThread(E2EWorker, settings, reporter=reporter):
        task_id = submit(api, settings.worker_queue, {"steps": 4, "gate": gate})

        while_running = task_when(api, task_id, "progress", 25)
        GATES[gate].set()
        done = task_reaches(api, task_id, "COMPLETED")
    reporter.close(FLUSH_S)

    assert while_running["status"] == "PROCESSING"
    assert (while_running["currentStep"], while_running["attempt"]) == ("step 1", 1)
    assert done["result"] == {"id": task_id, "attempt": 1, "steps": 4}
    assert done["workerType"] == "e2e"
    statuses = [entry["status"] for entry in done["history"]]
    assert statuses[:2] == ["QUEUED", "PROCESSING"]
    assert statuses[-1] == "COMPLETED"
    # Steps the sender had not sent yet may be coalesced; their order and the last one hold.
    progress = [e["progress"] for e in done["history"] if e["progress"] is not None]
    assert progress == sorted(progress)
    assert (done["progress"], done["currentStep"]) == (100, "step 4")


def test_a_transient_failure_shows_retry_scheduled_with_next_retry_then_completed(api, settings):
    reporter = GraphQLReporter(api.url, None)
    with WorkerThread(E2EWorker, settings, reporter=reporter):
        task_id = submit(api, settings.worker_queue, {"steps": 2, "fail_times": 1})
        done = task_reaches(api, task_id, "COMPLETED")
    reporter.close(FLUSH_S)

    [retry] = [entry for entry in done["history"] if entry["status"] == "RETRY_SCHEDULED"]
    assert retry["attempt"] == 1
    assert "told to fail on attempt 1" in retry["errorMessage"]
    assert datetime.fromisoformat(retry["nextRetryAt"]).tzinfo is not None
    assert done["attempt"] == 2
    assert done["result"]["attempt"] == 2


def test_a_permanent_failure_shows_failed_with_the_error(api, settings):
    reporter = GraphQLReporter(api.url, None)
    with WorkerThread(E2EWorker, settings, reporter=reporter):
        task_id = submit(api, settings.worker_queue, {"steps": 1, "fail_permanently": True})
        failed = task_reaches(api, task_id, "FAILED")
    reporter.close(FLUSH_S)

    assert "told to fail permanently" in failed["errorMessage"]
    assert failed["result"] is None


def publish_tasks(client: QueueClient, queue: str, count: int) -> list[str]:
    return [
        client.publish_task(queue, {"id": f"e2e-{uuid.uuid4().hex}", "steps": 3})
        for _ in range(count)
    ]


def test_with_task_api_down_for_the_whole_run_every_task_still_completes(client, settings):
    reporter = TeeReporter(GraphQLReporter(f"http://127.0.0.1:{free_port()}/graphql", None))
    worker = WorkerThread(E2EWorker, settings, reporter=reporter)
    with worker:
        ids = publish_tasks(client, settings.worker_queue, 10)
        wait_for(reporter.finished_all(ids), WAIT_S, message="all tasks finished")
        # Still healthy: consuming, and a later task completes as well.
        assert worker.consumer.consuming.is_set()
        later = publish_tasks(client, settings.worker_queue, 1)
        wait_for(reporter.finished_all(later), WAIT_S, message="a later task finished")
    reporter.close(0.5)

    assert set(reporter.finished.values()) == {"COMPLETED"}
    assert client.message_count(settings.worker_queue) == 0


def test_with_task_api_started_mid_run_the_final_statuses_arrive(client, settings):
    server = TaskApiServer()
    reporter = TeeReporter(GraphQLReporter(server.url, None))
    try:
        with WorkerThread(E2EWorker, settings, reporter=reporter):
            ids = publish_tasks(client, settings.worker_queue, 10)
            wait_for(reporter.finished_all(ids), WAIT_S, message="all tasks finished")
            server.start()
            for task_id in ids:
                task_reaches(server, task_id, "COMPLETED")
        reporter.close(FLUSH_S)
    finally:
        server.stop()


def test_a_worker_process_configured_by_graphql_url_and_token_reports_to_a_secured_api(
    client, settings, fast_retries
):
    token = f"tok-{uuid.uuid4().hex}"
    with TaskApiServer(tokens=[token], extra_env={"AMQP_URL": settings.amqp_url}) as server:
        # The same retry settings as the fixture's, so that its clean-up finds every queue.
        env = {name.upper(): str(value) for name, value in fast_retries.items()}
        env |= {
            "WORKER_QUEUE": str(settings.worker_queue),
            "GRAPHQL_URL": server.url,
            "GRAPHQL_TOKEN": token,
        }
        with WorkerProcess("e2e_progress_worker:main", "run", env=env) as worker:
            wait_for(
                lambda: client.consumer_count(str(settings.worker_queue)) > 0,
                WAIT_S,
                message="worker process consuming",
            )
            task_id = submit(server, str(settings.worker_queue), {"steps": 2})
            done = task_reaches(server, task_id, "COMPLETED")
            worker.send_signal(signal.SIGTERM)
            exit_code = worker.wait(WAIT_S)
            output = worker.output()

    assert done["result"] == {"id": task_id, "attempt": 1, "steps": 2}
    assert exit_code == 0
    assert token not in output
