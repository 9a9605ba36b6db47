"""submitTask: a confirmed message in RabbitMQ, a QUEUED task, idempotency, clear errors."""

from __future__ import annotations

import json
import uuid
from typing import Any

from task_api.testing import TaskApiServer, fetch_task, free_port
from worker_framework.testing import close_broker_connections
from worker_framework.tracing import parse_traceparent

SUBMIT = """
mutation Submit($queue: String!, $payload: JSON!, $id: ID) {
  submitTask(queue: $queue, payload: $payload, id: $id) { id status queue payload }
}
"""


def submit(
    api: TaskApiServer, queue: str, payload: Any, task_id: str | None = None
) -> dict[str, Any]:
    return api.graphql(SUBMIT, {"queue": queue, "payload": payload, "id": task_id})


def get_all(channel: Any, queue: str) -> list[tuple[Any, bytes]]:
    """Every message now in ``queue`` (acknowledged, so the queue ends empty)."""
    messages: list[tuple[Any, bytes]] = []
    while True:
        method, properties, body = channel.basic_get(queue=queue, auto_ack=True)
        if method is None:
            return messages
        messages.append((properties, body))


def test_submitted_task_is_a_persistent_json_message_with_id_and_first_attempt(
    api, rabbit_channel, queue_name, task_id
):
    body = submit(api, queue_name, {"to": "a@example.org", "template": "welcome"}, task_id)

    assert "errors" not in body, body
    assert body["data"]["submitTask"]["status"] == "QUEUED"
    [(properties, raw)] = get_all(rabbit_channel, queue_name)
    assert json.loads(raw) == {"to": "a@example.org", "template": "welcome", "id": task_id}
    assert properties.message_id == task_id
    assert properties.content_type == "application/json"
    assert properties.delivery_mode == 2
    assert set(properties.headers) == {"x-attempt", "traceparent"}
    assert properties.headers["x-attempt"] == 1
    trace = parse_traceparent(properties.headers["traceparent"])
    assert trace is not None
    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["traceId"] == trace.trace_id


def test_submitted_task_is_recorded_queued_with_its_queue_and_payload(
    api, rabbit_channel, queue_name, task_id
):
    submit(api, queue_name, {"n": 1}, task_id)

    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["status"] == "QUEUED"
    assert task["queue"] == queue_name
    assert task["payload"] == {"n": 1, "id": task_id}
    assert [h["status"] for h in task["history"]] == ["QUEUED"]


def test_submitting_the_same_id_twice_publishes_once(api, rabbit_channel, queue_name, task_id):
    first = submit(api, queue_name, {"n": 1}, task_id)
    second = submit(api, queue_name, {"n": 1}, task_id)

    assert first["data"]["submitTask"]["id"] == second["data"]["submitTask"]["id"] == task_id
    assert len(get_all(rabbit_channel, queue_name)) == 1


def test_an_id_in_the_payload_is_used_when_no_id_argument_is_given(
    api, rabbit_channel, queue_name, task_id
):
    body = submit(api, queue_name, {"id": task_id, "n": 2})

    assert body["data"]["submitTask"]["id"] == task_id
    [(properties, _raw)] = get_all(rabbit_channel, queue_name)
    assert properties.message_id == task_id


def test_a_task_without_any_id_gets_a_generated_one(api, rabbit_channel, queue_name):
    body = submit(api, queue_name, {"n": 3})

    generated = body["data"]["submitTask"]["id"]
    assert generated
    [(properties, raw)] = get_all(rabbit_channel, queue_name)
    assert properties.message_id == generated
    assert json.loads(raw)["id"] == generated


def test_submitting_to_a_missing_queue_is_an_error_naming_it_and_records_nothing(api, task_id):
    missing = f"no-such-queue-{uuid.uuid4().hex[:8]}"

    body = submit(api, missing, {"n": 1}, task_id)

    assert body["data"] is None
    message = body["errors"][0]["message"]
    assert missing in message
    assert "does not exist" in message
    assert fetch_task(api.url, task_id) is None


def test_a_payload_that_is_not_an_object_is_an_error_naming_payload(api, queue_name, task_id):
    body = submit(api, queue_name, [1, 2, 3], task_id)

    assert body["data"] is None
    assert "payload" in body["errors"][0]["message"]
    assert fetch_task(api.url, task_id) is None


def test_an_empty_queue_name_is_an_error_naming_queue(api, task_id):
    body = submit(api, "", {"n": 1}, task_id)

    assert body["data"] is None
    assert "queue" in body["errors"][0]["message"]


def test_submission_still_works_after_the_broker_closed_task_apis_connection(
    api, rabbit_channel, queue_name
):
    submit(api, queue_name, {"n": 1}, f"before-{uuid.uuid4().hex}")
    closed = close_broker_connections(f"task-api@127.0.0.1:{api.port}")

    body = submit(api, queue_name, {"n": 2}, f"after-{uuid.uuid4().hex}")

    assert closed == 1
    assert "errors" not in body, body
    assert len(get_all(rabbit_channel, queue_name)) == 2


def test_submission_uses_the_next_node_of_amqp_url_when_the_first_is_unreachable(
    amqp_url, rabbit_channel, queue_name, task_id
):
    nodes = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F,{amqp_url}"
    with TaskApiServer(extra_env={"AMQP_URL": nodes}) as server:
        body = submit(server, queue_name, {"n": 1}, task_id)

        assert "errors" not in body, body
        assert body["data"]["submitTask"]["status"] == "QUEUED"
    [(properties, raw)] = get_all(rabbit_channel, queue_name)
    assert properties.message_id == task_id
    assert json.loads(raw) == {"n": 1, "id": task_id}
