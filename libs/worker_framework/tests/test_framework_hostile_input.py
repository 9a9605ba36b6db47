"""Whatever a producer sends, the worker settles it and keeps running: named regressions.

Each test publishes one hostile message to a real worker (a process where a crash is what
broke, a thread where the consumer's counters tell the story) and then checks that an
ordinary task behind it still completes.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from framework_probe_worker import ProbeWorker
from hostile_producer import Double, HostileProducer, RawTimestamp
from worker_framework import TaskStatus
from worker_framework.inbound import MAX_ATTEMPT, attempt_from
from worker_framework.retry_policy import dead_letter_queue_name, retry_queue_name
from worker_framework.testing import (
    RecordingReporter,
    WorkerProcess,
    WorkerThread,
    amqp_url,
    settings_env,
    wait_for,
)

PROBE = "framework_probe_worker:main"
#: The issue's example: a number no AMQP integer field can hold.
TWENTY_ONE_DIGITS = "123456789012345678901"


@pytest.fixture
def producer() -> Iterator[HostileProducer]:
    """A publisher of raw, hostile messages."""
    with HostileProducer() as hostile:
        yield hostile


@contextlib.contextmanager
def worker_process(client, settings):
    """A probe worker process consuming ``settings``' queue; yields it once it consumes."""
    env = {**settings_env(settings), "WORKER_PREFETCH": "1"}
    with WorkerProcess(PROBE, "run", env=env) as worker:
        wait_for(
            lambda: client.consumer_count(settings.worker_queue) == 1 or worker.process.poll(),
            message="worker consuming",
        )
        try:
            yield worker
        except BaseException:
            print(worker.output())  # the worker's log, shown with the failure
            raise


def assert_still_serving(client, worker, settings, reply_queue):
    """The same process is alive and completes an ordinary task."""
    client.publish_task(settings.worker_queue, {"id": "ordinary"}, reply_to=reply_queue)
    [reply] = client.wait_for_messages(reply_queue, 1, timeout=30)
    assert worker.process.poll() is None, worker.output()
    assert reply.json()["pid"] == worker.pid


def test_attempt_header_too_large_for_amqp_with_an_invalid_body_is_dead_lettered_and_the_worker_survives(  # noqa: E501
    client, make_settings, reply_queue, producer
):
    settings = make_settings()
    with worker_process(client, settings) as worker:
        producer.publish(
            settings.worker_queue, b'{"id": 7, "fail_times": "x"}', {"x-attempt": TWENTY_ONE_DIGITS}
        )
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        assert_still_serving(client, worker, settings, reply_queue)
    assert dead.header("x-error-type") == "ValidationError"
    assert dead.header("x-attempt") == MAX_ATTEMPT
    assert dead.body == b'{"id": 7, "fail_times": "x"}'


def test_float_header_is_rewritten_as_text_in_the_dead_letter_and_the_worker_survives(
    client, make_settings, reply_queue, producer
):
    settings = make_settings()
    with worker_process(client, settings) as worker:
        producer.publish(
            settings.worker_queue,
            b'{"id": "floaty", "fail_permanently": true}',
            {"x-huge": Double(1e300), "x-ratio": Double(1.5), "x-attempt": Double(2.0)},
        )
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        assert_still_serving(client, worker, settings, reply_queue)
    assert dead.header("x-error-message") == "told to fail permanently"
    assert dead.header("x-huge") == str(int(1e300))
    assert dead.header("x-ratio") == 1  # pika decodes a double as an int
    assert "x-huge: integer beyond 64 bits, sent as text" in dead.header("x-dropped-headers")


def test_header_name_that_is_not_utf8_is_rewritten_and_the_worker_survives(
    client, make_settings, reply_queue, producer
):
    settings = make_settings()
    with worker_process(client, settings) as worker:
        producer.publish(
            settings.worker_queue,
            b'{"id": "badkey", "fail_permanently": true}',
            {b"x-\xff\xfe": "value", "x-fine": "kept"},
        )
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        assert_still_serving(client, worker, settings, reply_queue)
    assert dead.header("x-fine") == "kept"
    assert dead.header("x-\ufffd\ufffd") == "value"
    assert "name not UTF-8, rewritten" in dead.header("x-dropped-headers")


def test_message_id_that_is_not_utf8_becomes_text_everywhere(client, make_settings, producer):
    settings = make_settings()
    reporter = RecordingReporter()
    with WorkerThread(ProbeWorker, settings, reporter=reporter):
        producer.publish(
            settings.worker_queue, b'{"fail_permanently": true}', message_id=b"id-\xff"
        )
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        wait_for(lambda: reporter.for_task("id-\ufffd"), message="updates under the text id")
    assert dead.message_id == "id-\ufffd"
    assert all(isinstance(update.task_id, str) for update in reporter.updates)


def test_timestamp_header_pika_cannot_decode_is_settled_without_a_reconnect_loop(
    client, make_settings, reply_queue, producer
):
    settings = make_settings()
    with WorkerThread(ProbeWorker, settings) as worker:
        producer.publish(
            settings.worker_queue,
            b'{"id": "far-future", "fail_permanently": true}',
            {"x-when": RawTimestamp(2**40), "x-attempt": 1},
        )
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        client.publish_task(settings.worker_queue, {"id": "after"}, reply_to=reply_queue)
        client.wait_for_messages(reply_queue, 1)
        assert worker.consumer.reconnects == 0
    assert "all headers dropped: pika could not decode them" in dead.header("x-dropped-headers")
    assert dead.header("x-error-message") == "told to fail permanently"


def test_headers_nested_past_the_recursion_limit_are_dropped_and_the_worker_survives(
    client, make_settings, reply_queue, producer
):
    settings = make_settings()
    deep: object = "bottom"
    for _ in range(3000):
        deep = {"a": deep}
    with worker_process(client, settings) as worker:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(20_000)  # pika encodes recursively, like it decodes
        try:
            producer.publish(
                settings.worker_queue,
                b'{"id": "deep", "fail_permanently": true}',
                {"x-deep": deep, "x-attempt": 1},
            )
        finally:
            sys.setrecursionlimit(limit)
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        assert_still_serving(client, worker, settings, reply_queue)
    assert "could not decode them (RecursionError)" in dead.header("x-dropped-headers")
    assert dead.header("x-deep") is None


def test_headers_filling_the_frame_still_yield_a_dead_letter_and_the_worker_survives(
    client, make_settings, reply_queue, producer
):
    settings = make_settings()
    # 131 000 bytes of headers: just under the broker's frame (131 072 bytes, less framing), so
    # a copy with the framework's own headers added would not fit.
    headers = {f"x-big-{n}": "b" * 16_360 for n in range(8)}
    with worker_process(client, settings) as worker:
        producer.publish(
            settings.worker_queue, b'{"id": "bulky", "fail_permanently": true}', headers
        )
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        assert_still_serving(client, worker, settings, reply_queue)
    assert dead.header("x-error-message") == "told to fail permanently"
    assert "dropped (headers over" in dead.header("x-dropped-headers")
    assert dead.body == b'{"id": "bulky", "fail_permanently": true}'


def test_a_copy_too_large_for_the_negotiated_frame_becomes_a_minimal_dead_letter(
    client, make_settings, reply_queue, producer
):
    # The worker negotiates 8 KiB frames: the delivery fits, its dead letter with the
    # framework's headers added would not, and sending it would make the broker drop the
    # connection (and redeliver the message, forever).
    settings = make_settings(amqp_url=f"{amqp_url()}?frame_max=8192")
    body = b'{"id": "tight", "fail_permanently": true}'
    with WorkerThread(ProbeWorker, settings) as worker:
        producer.publish(settings.worker_queue, body, {"x-filler": "f" * 8100})
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        client.publish_task(settings.worker_queue, {"id": "after"}, reply_to=reply_queue)
        client.wait_for_messages(reply_queue, 1)
        assert worker.consumer.reconnects == 0
    assert dead.body == body
    assert dead.header("x-error-type") == "OutcomeNotStored"
    assert "exceed the frame size" in dead.header("x-error-message")
    assert "told to fail permanently" in dead.header("x-error-message")
    assert dead.header("x-filler") is None


def test_a_result_that_cannot_become_json_is_dead_lettered_and_the_worker_keeps_consuming(
    client, make_settings, reply_queue
):
    settings = make_settings()
    reporter = RecordingReporter()
    with WorkerThread(ProbeWorker, settings, reporter=reporter) as worker:
        client.publish_task(settings.worker_queue, {"id": "blob", "unserialisable_result": True})
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        client.publish_task(settings.worker_queue, {"id": "after"}, reply_to=reply_queue)
        client.wait_for_messages(reply_queue, 1)
        assert worker.consumer.reconnects == 0
    assert dead.header("x-error-type") == "ResultNotSerialisable"
    assert reporter.for_task("blob")[-1].status is TaskStatus.FAILED


@contextlib.contextmanager
def refusing(queue: str) -> Iterator[None]:
    """A broker policy that makes ``queue`` refuse (nack) every publish."""
    name = f"refuse-{uuid.uuid4().hex[:8]}"
    definition = json.dumps({"max-length": 0, "overflow": "reject-publish"})
    pattern = f"^{queue.replace('.', '[.]')}$"
    command = ["rabbitmqctl", "set_policy", "--apply-to", "queues", "--priority", "100"]
    subprocess.run([*command, name, pattern, definition], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["rabbitmqctl", "clear_policy", name], check=True, capture_output=True)


def test_outcome_the_broker_keeps_refusing_is_retried_with_backoff_then_dead_lettered_without_rerunning_the_task(  # noqa: E501
    client, make_settings, tmp_path
):
    settings = make_settings(worker_max_retries=3)
    executions = tmp_path / "executions"
    with (
        refusing(retry_queue_name(settings.worker_queue, 50)),
        WorkerThread(ProbeWorker, settings) as worker,
    ):
        client.publish_task(
            settings.worker_queue,
            {"id": "refused", "fail_times": 1, "executions_log": str(executions)},
        )
        [dead] = client.wait_for_messages(
            dead_letter_queue_name(settings.worker_queue), 1, timeout=60
        )
        wait_for(lambda: not worker.consumer.unsettled, message="every delivery settled")
    assert executions.read_text().splitlines() == ["1"]
    assert dead.header("x-error-type") == "OutcomeNotStored"
    assert "refused the retry copy 5 times" in dead.header("x-error-message")
    assert "told to fail" in dead.header("x-error-message")
    assert client.message_count(settings.worker_queue) == 0


@pytest.mark.parametrize(
    ("value", "attempt"),
    [
        (None, 1),
        (3, 3),
        (0, 1),
        (-4, 1),
        (True, 1),
        (2**80, MAX_ATTEMPT),
        (TWENTY_ONE_DIGITS, MAX_ATTEMPT),
        ("-" + TWENTY_ONE_DIGITS, 1),
        (b" 12 ", 12),
        ("twelve", 1),
        ("1e9", 1),
        (float("inf"), 1),
        (float("-inf"), 1),
        (float("nan"), 1),
        (2.9, 2),
        (Decimal("Infinity"), 1),
        (Decimal("5"), 5),
        ([3], 1),
        ({"n": 3}, 1),
    ],
)
def test_attempt_header_rule(value, attempt):
    # float("inf") cannot reach a worker through RabbitMQ (the broker closes the publisher's
    # connection), so the rule is checked here for it as for every other odd value.
    assert attempt_from(value) == attempt
