"""Retries, dead letters and bad input, end to end against RabbitMQ."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from framework_probe_worker import ProbeWorker
from worker_framework import TaskStatus
from worker_framework.broker import OutgoingMessage
from worker_framework.retry_policy import dead_letter_queue_name, retry_queue_name
from worker_framework.testing import RecordingReporter, WorkerThread, wait_for

#: Deeper than the interpreter's recursion limit: json.loads raises RecursionError, not
#: ValueError.
DEEPLY_NESTED = b"[" * 100_000


class ExplodingReporter(RecordingReporter):
    """Breaks the reporter contract (never raise) for one task, from inside the task runner."""

    def report(self, update):
        super().report(update)
        if update.task_id == "explodes":
            raise RuntimeError("progress API https://bot:s3cretpw@progress.example.org is down")


def test_transient_failures_are_retried_until_success_with_attempt_header(
    client, make_settings, reply_queue
):
    settings = make_settings()
    reporter = RecordingReporter()
    with WorkerThread(ProbeWorker, settings, reporter=reporter):
        task_id = client.publish_task(
            settings.worker_queue, {"fail_times": 2}, reply_to=reply_queue
        )
        [reply] = client.wait_for_messages(reply_queue, 1)
    assert reply.json()["attempt"] == 3
    assert reply.header("x-attempt") == 3
    statuses = [
        u.status for u in reporter.for_task(task_id) if u.status is not TaskStatus.PROCESSING
    ]
    assert statuses == [
        TaskStatus.RETRY_SCHEDULED,
        TaskStatus.RETRY_SCHEDULED,
        TaskStatus.COMPLETED,
    ]
    retry_update = next(
        u for u in reporter.for_task(task_id) if u.status is TaskStatus.RETRY_SCHEDULED
    )
    assert retry_update.next_retry_at is not None and retry_update.next_retry_at.tzinfo is not None


def test_exhausted_retries_go_to_dead_letter_queue_with_headers_and_original_body(
    client, make_settings
):
    settings = make_settings(worker_max_retries=2)
    reporter = RecordingReporter()
    body = b'{"id": "exhausted-1",  "fail_times": 99}'  # odd spacing: must survive byte for byte
    with WorkerThread(ProbeWorker, settings, reporter=reporter):
        client.publish_task(settings.worker_queue, body)
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        wait_for(
            lambda: any(u.status is TaskStatus.FAILED for u in reporter.for_task("exhausted-1"))
        )
    assert dead.body == body
    assert dead.header("x-attempt") == 3
    assert dead.header("x-error-type") == "WorkerError"
    assert "retries exhausted" in dead.header("x-error-message")
    assert datetime.fromisoformat(dead.header("x-failed-at")).utcoffset() == timedelta(0)
    assert client.message_count(settings.worker_queue) == 0


def test_permanent_error_goes_to_dead_letter_queue_at_once(client, make_settings):
    settings = make_settings()
    reporter = RecordingReporter()
    with WorkerThread(ProbeWorker, settings, reporter=reporter):
        task_id = client.publish_task(settings.worker_queue, {"fail_permanently": True})
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        wait_for(lambda: any(u.status is TaskStatus.FAILED for u in reporter.for_task(task_id)))
    assert dead.header("x-attempt") == 1
    assert dead.header("x-error-message") == "told to fail permanently"
    assert [u.status for u in reporter.for_task(task_id)] == [
        TaskStatus.PROCESSING,
        TaskStatus.FAILED,
    ]


def test_invalid_json_goes_to_dead_letter_queue_with_reason_and_worker_keeps_consuming(
    client, make_settings, reply_queue
):
    settings = make_settings()
    with WorkerThread(ProbeWorker, settings):
        client.publish_task(settings.worker_queue, b"{not json")
        client.publish_task(settings.worker_queue, {"id": "after-bad-json"}, reply_to=reply_queue)
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        [reply] = client.wait_for_messages(reply_queue, 1)
    assert dead.body == b"{not json"
    assert dead.header("x-error-type") == "InvalidJSON"
    assert reply.json()["id"] == "after-bad-json"


def test_body_nested_too_deeply_to_decode_is_dead_lettered_and_worker_keeps_consuming(
    client, make_settings, reply_queue
):
    settings = make_settings(worker_prefetch=1)
    with WorkerThread(ProbeWorker, settings) as worker:
        client.publish_task(settings.worker_queue, DEEPLY_NESTED)
        client.publish_task(settings.worker_queue, {"id": "after-deep"}, reply_to=reply_queue)
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        [reply] = client.wait_for_messages(reply_queue, 1)
        wait_for(lambda: not worker.consumer.unsettled, message="every delivery settled")
    assert dead.body == DEEPLY_NESTED
    assert dead.header("x-error-type") == "InvalidJSON"
    assert "nested too deeply" in dead.header("x-error-message")
    assert reply.json()["id"] == "after-deep"


def test_an_error_escaping_the_task_runner_dead_letters_the_delivery_and_worker_keeps_consuming(
    client, make_settings, reply_queue
):
    settings = make_settings()
    reporter = ExplodingReporter()
    body = b'{"id": "explodes"}'
    with WorkerThread(ProbeWorker, settings, reporter=reporter) as worker:
        client.publish_task(settings.worker_queue, body)
        client.publish_task(settings.worker_queue, {"id": "after-boom"}, reply_to=reply_queue)
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        [reply] = client.wait_for_messages(reply_queue, 1)
        wait_for(lambda: not worker.consumer.unsettled, message="every delivery settled")
    assert dead.body == body
    assert dead.header("x-error-type") == "RuntimeError"
    assert "https://bot:***@progress.example.org" in dead.header("x-error-message")
    assert "s3cretpw" not in dead.header("x-error-message")
    assert reply.json()["id"] == "after-boom"


def test_undecodable_message_without_message_id_is_dead_lettered_without_progress_updates(
    client, make_settings
):
    settings = make_settings()
    reporter = RecordingReporter()
    with WorkerThread(ProbeWorker, settings, reporter=reporter):
        client.publish(settings.worker_queue, OutgoingMessage(b"{not json", {"x-attempt": 1}))
        client.publish_task(settings.worker_queue, {"id": "named"})
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
        # One worker thread settles in delivery order: "named" completes after the bad one.
        wait_for(lambda: any(u.status is TaskStatus.COMPLETED for u in reporter.for_task("named")))
    assert dead.message_id is None
    assert dead.header("x-error-type") == "InvalidJSON"
    assert {u.task_id for u in reporter.updates} == {"named"}


def test_body_failing_schema_goes_to_dead_letter_queue_and_worker_keeps_consuming(
    client, make_settings, reply_queue
):
    settings = make_settings()
    with WorkerThread(ProbeWorker, settings):
        client.publish_task(settings.worker_queue, {"id": "bad-schema", "fail_times": "many"})
        client.publish_task(settings.worker_queue, b"[1, 2]")
        client.publish_task(settings.worker_queue, {"id": "after-bad-schema"}, reply_to=reply_queue)
        dead = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 2)
        [reply] = client.wait_for_messages(reply_queue, 1)
    assert {d.header("x-error-type") for d in dead} == {"ValidationError"}
    assert "fail_times" in dead[0].header("x-error-message")
    assert reply.json()["id"] == "after-bad-schema"


def test_retry_waits_at_least_its_backoff_delay(client, make_settings, reply_queue):
    settings = make_settings(worker_initial_delay_ms=300, worker_backoff_factor=2.0)
    with WorkerThread(ProbeWorker, settings):
        published = time.monotonic()
        client.publish_task(settings.worker_queue, {"fail_times": 2}, reply_to=reply_queue)
        client.wait_for_messages(reply_queue, 1)
        elapsed = time.monotonic() - published
    # Retries 1 and 2 wait at least 300 ms and 600 ms (jitter only adds): a lower bound only.
    assert elapsed >= 0.9


def test_short_retry_published_after_long_one_is_delivered_first(
    client, make_settings, reply_queue
):
    # Retry 1 waits 300 ms, retry 2 waits 30 s: the tiers keep the short one from queueing behind.
    settings = make_settings(
        worker_initial_delay_ms=300, worker_backoff_factor=100.0, worker_max_delay_ms=30_000
    )
    with WorkerThread(ProbeWorker, settings):
        client.publish_task(
            settings.worker_queue, {"id": "long", "fail_times": 2}, attempt=2, reply_to=reply_queue
        )
        wait_for(lambda: client.message_count(retry_queue_name(settings.worker_queue, 30_000)) == 1)
        client.publish_task(
            settings.worker_queue, {"id": "short", "fail_times": 1}, reply_to=reply_queue
        )
        [reply] = client.wait_for_messages(reply_queue, 1)
        assert reply.json()["id"] == "short"
        assert client.message_count(retry_queue_name(settings.worker_queue, 30_000)) == 1


def test_credentials_in_an_error_message_are_redacted_in_the_dead_letter(client, make_settings):
    settings = make_settings()
    with WorkerThread(ProbeWorker, settings):
        client.publish_task(
            settings.worker_queue, {"secret_in_error": "https://bot:s3cretpw@api.example.org/x"}
        )
        [dead] = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 1)
    assert "s3cretpw" not in dead.header("x-error-message")
    assert "https://bot:***@api.example.org/x" in dead.header("x-error-message")
