"""submitTask through the outbox: crashes and outages lose nothing, races double nothing."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from task_api.outbox import CRASH_BEFORE_PUBLISH_VARIABLE
from task_api.testing import TaskApiServer, fetch_task, free_port, graphql
from worker_framework.testing import wait_for

SUBMIT = """
mutation Submit($queue: String!, $payload: JSON!, $id: ID) {
  submitTask(queue: $queue, payload: $payload, id: $id) { id status }
}
"""
#: Short, so that the tests see a lease end and a sweep run within a second or so.
LEASE_S = 0.5
#: Long enough that no sweep runs during a test that means to recover by resubmission.
NO_SWEEP = {"TASK_API_OUTBOX_SWEEP_S": "3600", "TASK_API_OUTBOX_LEASE_S": str(LEASE_S)}
FAST_SWEEP = {"TASK_API_OUTBOX_SWEEP_S": "0.2", "TASK_API_OUTBOX_LEASE_S": str(LEASE_S)}


def submit(url: str, queue: str, task_id: str, payload: dict[str, Any] | None = None) -> Any:
    variables = {"queue": queue, "payload": payload or {"n": 1}, "id": task_id}
    return graphql(url, SUBMIT, variables)


def messages_in(channel: Any, queue: str) -> int:
    return int(channel.queue_declare(queue=queue, passive=True).method.message_count)


def drain(channel: Any, queue: str) -> list[tuple[Any, bytes]]:
    """Every message now in ``queue`` (acknowledged, so the queue ends empty)."""
    found: list[tuple[Any, bytes]] = []
    while True:
        method, properties, body = channel.basic_get(queue=queue, auto_ack=True)
        if method is None:
            return found
        found.append((properties, body))


def crash_while_submitting(
    workdir: Path, amqp_url: str, queue: str, task_id: str, lease_s: float = LEASE_S
) -> float:
    """Run a task-api that kills itself between the commit and the publish; when it died."""
    env = {
        "AMQP_URL": amqp_url,
        CRASH_BEFORE_PUBLISH_VARIABLE: "1",
        "TASK_API_OUTBOX_SWEEP_S": "3600",
        "TASK_API_OUTBOX_LEASE_S": str(lease_s),
    }
    server = TaskApiServer(workdir=workdir, extra_env=env)
    server.start()
    with pytest.raises(requests.ConnectionError):
        submit(server.url, queue, task_id)
    assert server.wait_for_exit() == -9
    return time.time()


def wait_for_lease_to_end(since: float) -> None:
    wait_for(lambda: time.time() > since + LEASE_S, message="the crashed publisher's lease to end")


def test_a_crash_between_commit_and_publish_is_recovered_by_resubmitting_the_id(
    tmp_path, amqp_url, rabbit_channel, queue_name, task_id
):
    died_at = crash_while_submitting(tmp_path, amqp_url, queue_name, task_id)
    assert messages_in(rabbit_channel, queue_name) == 0

    with TaskApiServer(workdir=tmp_path, extra_env={"AMQP_URL": amqp_url, **NO_SWEEP}) as api:
        recorded = fetch_task(api.url, task_id)
        assert recorded is not None and recorded["status"] == "QUEUED"
        wait_for_lease_to_end(died_at)

        answer = submit(api.url, queue_name, task_id)
        again = submit(api.url, queue_name, task_id)

    assert "errors" not in answer and "errors" not in again, (answer, again)
    [(properties, body)] = drain(rabbit_channel, queue_name)
    assert properties.message_id == task_id
    assert json.loads(body) == {"n": 1, "id": task_id}


def test_a_crash_between_commit_and_publish_is_recovered_by_the_sweep(
    tmp_path, amqp_url, rabbit_channel, queue_name, task_id
):
    crash_while_submitting(tmp_path, amqp_url, queue_name, task_id)

    with TaskApiServer(workdir=tmp_path, extra_env={"AMQP_URL": amqp_url, **FAST_SWEEP}) as api:
        wait_for(lambda: messages_in(rabbit_channel, queue_name) >= 1, message="the sweep")
        resubmitted = submit(api.url, queue_name, task_id)
        log = api.log()

    assert "errors" not in resubmitted, resubmitted
    [(properties, _)] = drain(rabbit_channel, queue_name)
    assert properties.message_id == task_id
    assert "published 1 task(s) left unpublished" in log


def test_a_resubmission_does_not_publish_while_another_publisher_holds_the_lease(
    tmp_path, amqp_url, rabbit_channel, queue_name, task_id
):
    # A lease far longer than the test: the crashed process might, for all anyone knows, still
    # be publishing.
    crash_while_submitting(tmp_path, amqp_url, queue_name, task_id, lease_s=3600)
    env = {"AMQP_URL": amqp_url, "TASK_API_OUTBOX_SWEEP_S": "3600"}
    with TaskApiServer(workdir=tmp_path, extra_env=env) as api:
        answer = submit(api.url, queue_name, task_id)

    assert answer["data"]["submitTask"]["status"] == "QUEUED"
    assert messages_in(rabbit_channel, queue_name) == 0


def test_with_rabbitmq_unreachable_a_submission_is_kept_and_published_once_it_is_back(
    tmp_path, amqp_url, rabbit_channel, queue_name, task_id
):
    unreachable = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    with TaskApiServer(workdir=tmp_path, extra_env={"AMQP_URL": unreachable, **NO_SWEEP}) as api:
        refused = submit(api.url, queue_name, task_id)
        recorded = fetch_task(api.url, task_id)
        outage_log = api.log()

    [error] = refused["errors"]
    assert error["extensions"]["code"] == "PUBLISH_PENDING"
    assert "RabbitMQ is unreachable" in error["message"]
    assert recorded is not None and recorded["status"] == "QUEUED"
    assert "guest:guest" not in outage_log

    with TaskApiServer(workdir=tmp_path, extra_env={"AMQP_URL": amqp_url, **FAST_SWEEP}):
        wait_for(lambda: messages_in(rabbit_channel, queue_name) >= 1, message="the sweep")
    [(properties, _)] = drain(rabbit_channel, queue_name)
    assert properties.message_id == task_id


def test_a_refused_publish_keeps_nothing_so_the_id_can_be_submitted_again(
    amqp_url, rabbit_channel, queue_name, task_id
):
    with TaskApiServer(extra_env={"AMQP_URL": amqp_url, **FAST_SWEEP}) as api:
        missing = submit(api.url, f"{queue_name}-missing", task_id)
        forgotten = fetch_task(api.url, task_id)
        accepted = submit(api.url, queue_name, task_id)

    assert missing["errors"][0]["extensions"]["code"] == "PUBLISH_FAILED"
    assert forgotten is None
    assert "errors" not in accepted, accepted
    assert len(drain(rabbit_channel, queue_name)) == 1


def test_concurrent_submissions_of_one_id_on_postgresql_publish_one_message(
    postgres_database_url, amqp_url, rabbit_channel, queue_name
):
    env = {"AMQP_URL": amqp_url, "TASK_API_OUTBOX_SWEEP_S": "3600"}
    ids = [f"race-{n}-{queue_name}" for n in range(5)]
    # Two replicas on one database, as in a deployment with two task-api processes.
    with (
        TaskApiServer(database_url=postgres_database_url, extra_env=env) as first,
        TaskApiServer(database_url=postgres_database_url, extra_env=env) as second,
    ):
        for task_id in ids:
            start = threading.Barrier(8)
            answers: list[Any] = []

            def race(
                url: str,
                task_id: str = task_id,
                start: threading.Barrier = start,
                answers: list[Any] = answers,
            ) -> None:
                start.wait()
                answers.append(submit(url, queue_name, task_id))

            threads = [
                threading.Thread(target=race, args=(server.url,)) for server in (first, second) * 4
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert all("errors" not in answer for answer in answers), answers

    received = [properties.message_id for properties, _ in drain(rabbit_channel, queue_name)]
    assert sorted(received) == sorted(ids)
