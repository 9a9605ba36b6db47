"""task-api in a container, and the whole path through containers: task-api -> RabbitMQ -> a
worker container -> progress back to task-api -> COMPLETED."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import requests
from containers.container_support import (
    FAST_HEALTH_PROBE,
    running,
    worker_env,
)
from task_api.testing import free_port, graphql
from worker_framework.testing import amqp_url, wait_for

WELCOME = Path("apps/email-service/examples/welcome.json")

SUBMIT = """
mutation Submit($queue: String!, $payload: JSON!) {
  submitTask(queue: $queue, payload: $payload) { id status }
}
"""
STATUS = "query Status($id: ID!) { task(id: $id) { status progress workerType } }"


def test_task_api_container_serves_healthz_and_a_worker_container_completes_a_submitted_task(
    image, worker_queue
):
    port = free_port()
    token = secrets.token_urlsafe(24)
    api_env = {"TASK_API_PORT": str(port), "TASK_API_TOKENS": token, "AMQP_URL": amqp_url()}
    graphql_url = f"http://127.0.0.1:{port}/graphql"
    with running(image("task-api"), env=api_env, options=FAST_HEALTH_PROBE) as api:
        api.wait_healthy()
        healthz = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert healthz.status_code == 200
        assert healthz.json() == {"status": "ok"}

        worker_settings = worker_env(worker_queue, GRAPHQL_URL=graphql_url, GRAPHQL_TOKEN=token)
        with running(
            image("email-service"), env=worker_settings, options=FAST_HEALTH_PROBE
        ) as worker:
            # Healthy: the worker has declared its queue, so task-api can publish to it.
            worker.wait_healthy()
            payload = json.loads(WELCOME.read_text())
            submitted = graphql(
                graphql_url, SUBMIT, {"queue": worker_queue, "payload": payload}, token=token
            )
            assert submitted.get("errors") is None, submitted
            task_id = submitted["data"]["submitTask"]["id"]

            def completed() -> dict[str, Any]:
                task = graphql(graphql_url, STATUS, {"id": task_id}, token=token)["data"]["task"]
                return task if task and task["status"] == "COMPLETED" else {}

            task = wait_for(
                completed, timeout=120, interval=0.5, message=f"task {task_id} COMPLETED"
            )
            assert task["progress"] == 100
            assert task["workerType"] == "email"
            assert worker.stop(30) == 0
        assert api.stop(30) == 0
