"""submitTask exports a publish span when an OTLP endpoint is set (a real OTLP/HTTP receiver)."""

from __future__ import annotations

import os

from otlp_receiver import OtlpReceiver, ReceivedSpan
from task_api.testing import TaskApiServer
from worker_framework.testing import wait_for
from worker_framework.tracing import parse_traceparent

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SUBMIT = """
mutation Submit($queue: String!, $payload: JSON!) {
  submitTask(queue: $queue, payload: $payload) { id }
}
"""


def test_submit_task_exports_a_producer_span_that_is_the_messages_parent(
    rabbit_channel, queue_name
):
    with OtlpReceiver() as receiver:
        env = {
            "AMQP_URL": os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        with TaskApiServer(extra_env=env) as api:
            body = api.graphql(
                SUBMIT, {"queue": queue_name, "payload": {}}, headers={"traceparent": CALLER}
            )
            assert "errors" not in body, body
            spans = wait_for(lambda: receiver.spans_of(TRACE_ID), 30, message="the publish span")

    [span] = spans
    method, properties, _ = rabbit_channel.basic_get(queue=queue_name, auto_ack=True)
    assert method is not None
    sent = parse_traceparent(properties.headers["traceparent"])
    assert sent is not None
    assert span.name == f"{queue_name} publish"
    assert span.kind == ReceivedSpan.PRODUCER
    assert span.service_name == "task-api"
    assert span.parent_span_id == "00f067aa0ba902b7"
    assert (sent.trace_id, sent.parent_id) == (TRACE_ID, span.span_id)
