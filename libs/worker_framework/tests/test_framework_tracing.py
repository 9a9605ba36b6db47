"""Trace ids: the W3C traceparent read on receipt, in every log line, on every copy, in progress."""

from __future__ import annotations

import decimal
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from framework_probe_worker import ProbeWorker
from worker_framework.broker import Delivery
from worker_framework.cli import build_cli
from worker_framework.graphql_client import to_input
from worker_framework.inbound import normalise
from worker_framework.outcomes import (
    DeadLettered,
    RetryScheduled,
    dead_letter_message,
    minimal_dead_letter,
    replay_message,
    retry_message,
)
from worker_framework.progress import ProgressUpdate, TaskStatus
from worker_framework.retry_policy import dead_letter_queue_name
from worker_framework.testing import (
    RecordingReporter,
    WorkerProcess,
    WorkerThread,
    settings_env,
    wait_for,
)
from worker_framework.tracing import (
    TraceContext,
    describe_invalid,
    new_trace,
    parse_traceparent,
)

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CALLER_TRACE = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")

cli = build_cli(ProbeWorker)


def delivery(headers: dict[str, Any]) -> Delivery:
    return Delivery(b'{"id": "t"}', headers, "t", None, None, None, False, 1, None)


# -- parsing ---------------------------------------------------------------------------------


def test_a_valid_traceparent_is_read_into_trace_id_parent_id_and_flags():
    assert parse_traceparent(CALLER) == CALLER_TRACE
    assert parse_traceparent(CALLER.encode()) == CALLER_TRACE
    assert CALLER_TRACE.traceparent == CALLER


def test_a_later_version_may_append_fields_after_a_dash():
    later = "01" + CALLER[2:] + "-what-comes-next"
    assert parse_traceparent(later) == CALLER_TRACE


@pytest.mark.parametrize(
    "value",
    [
        None,
        1,
        1.5,
        True,
        decimal.Decimal("1.5"),
        datetime(2026, 1, 1, tzinfo=UTC),
        [CALLER],
        {"traceparent": CALLER},
        CALLER.upper(),
        CALLER[:-1],
        CALLER + "0",
        CALLER + "-more",  # version 00 has exactly four fields
        "01" + CALLER[2:] + "x",  # a later version appends only after a dash
        "ff" + CALLER[2:],
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        " " + CALLER,
        "\u0660" * 55,  # digits, but not ASCII hex
        b"\xff" * 55,
        "",
        "01" + CALLER[2:] + "-" + "x" * 100_000,
    ],
)
def test_anything_but_a_valid_traceparent_reads_as_absent(value):
    assert parse_traceparent(value) is None


def test_new_traces_are_valid_sampled_and_distinct():
    traces = [new_trace() for _ in range(1000)]
    assert all(parse_traceparent(trace.traceparent) == trace for trace in traces)
    assert all(trace.flags == "01" for trace in traces)
    assert len({trace.trace_id for trace in traces}) == 1000


def test_an_invalid_value_is_described_bounded_escaped_and_on_one_line():
    hostile = "\x1b[31m\n\r" + "A" * 100_000
    described = describe_invalid(hostile)
    assert len(described) < 120
    assert not any(char in described for char in "\x1b\n\r")
    assert described.startswith("str '\\x1b[31m\\n\\r")
    assert describe_invalid(3.5) == "float"


# -- normalisation and copies ------------------------------------------------------------------


def test_normalise_reads_a_valid_traceparent():
    message = normalise(delivery({"x-attempt": 1, "traceparent": CALLER}))
    assert message.trace == CALLER_TRACE
    assert message.notes == ()


def test_normalise_starts_a_trace_for_a_message_without_one():
    first = normalise(delivery({"x-attempt": 1}))
    second = normalise(delivery({}))
    assert first.trace is not None and second.trace is not None
    assert first.trace.trace_id != second.trace.trace_id


def test_normalise_starts_a_trace_for_an_invalid_one_and_notes_it_escaped():
    message = normalise(delivery({"traceparent": "\x1b[2J" + CALLER.upper()}))
    assert message.trace is not None
    assert message.trace.trace_id != CALLER_TRACE.trace_id
    [note] = message.notes
    assert note.startswith("traceparent: invalid (str '\\x1b[2J00-4BF92F")
    assert "\x1b" not in note


@pytest.mark.parametrize("incoming", [CALLER, "garbage", None])
def test_every_copy_carries_the_tasks_trace(incoming):
    headers = {"x-attempt": 1} if incoming is None else {"x-attempt": 1, "traceparent": incoming}
    message = normalise(delivery(headers))
    assert message.trace is not None
    expected = message.trace.traceparent
    retry = RetryScheduled("E", "m", 2, 1000, 1000, datetime.now(UTC))
    dead = DeadLettered("E", "m")

    copies = [
        retry_message(message, retry),
        dead_letter_message(message, dead, 1),
        minimal_dead_letter(message, "E", "m"),
    ]
    replayed = replay_message(normalise(delivery(dict(copies[1].headers))))

    assert [copy.headers["traceparent"] for copy in [*copies, replayed]] == [expected] * 4
    if incoming == CALLER:
        assert expected == CALLER


def test_progress_input_carries_the_trace_id():
    update = ProgressUpdate("t", "w", TaskStatus.PROCESSING, trace_id=CALLER_TRACE.trace_id)
    assert to_input(update)["traceId"] == CALLER_TRACE.trace_id
    assert "traceId" not in to_input(ProgressUpdate("t", "w", TaskStatus.PROCESSING))


# -- a real broker -----------------------------------------------------------------------------


def test_a_retry_and_its_dead_letter_stay_in_the_trace_the_task_came_with(client, make_settings):
    settings = make_settings(worker_max_retries=1)
    reporter = RecordingReporter()
    dlq = dead_letter_queue_name(settings.worker_queue)
    with WorkerThread(ProbeWorker, settings, reporter=reporter):
        task_id = client.publish_task(
            settings.worker_queue, {"fail_times": 9}, headers={"traceparent": CALLER}
        )
        wait_for(lambda: client.message_count(dlq) == 1, message="the dead letter")

    [dead] = client.peek(dlq)
    assert dead.header("x-attempt") == 2  # it went through a retry copy
    assert dead.header("traceparent") == CALLER
    updates = reporter.for_task(task_id)
    assert {update.attempt for update in updates} == {1, 2}
    assert {update.trace_id for update in updates} == {CALLER_TRACE.trace_id}


def test_a_task_with_an_invalid_traceparent_keeps_one_new_trace_across_its_attempts(
    client, make_settings
):
    settings = make_settings(worker_max_retries=1)
    reporter = RecordingReporter()
    dlq = dead_letter_queue_name(settings.worker_queue)
    with WorkerThread(ProbeWorker, settings, reporter=reporter):
        task_id = client.publish_task(
            settings.worker_queue, {"fail_times": 9}, headers={"traceparent": 42}
        )
        wait_for(lambda: client.message_count(dlq) == 1, message="the dead letter")

    [dead] = client.peek(dlq)
    trace = parse_traceparent(dead.header("traceparent"))
    assert trace is not None
    assert "traceparent: invalid (int)" in dead.header("x-dropped-headers")
    assert {update.trace_id for update in reporter.for_task(task_id)} == {trace.trace_id}


def test_dlq_replay_keeps_the_traceparent(client, make_settings):
    settings = make_settings()
    dlq = dead_letter_queue_name(settings.worker_queue)
    with WorkerThread(ProbeWorker, settings):
        client.publish_task(
            settings.worker_queue, {"fail_permanently": True}, headers={"traceparent": CALLER}
        )
        wait_for(lambda: client.message_count(dlq) == 1, message="the dead letter")

    result = CliRunner().invoke(cli, ["dlq", "replay"], env=settings_env(settings))

    assert result.exit_code == 0, result.output
    [replayed] = client.peek(settings.worker_queue)
    assert replayed.header("traceparent") == CALLER


def test_enqueue_publishes_each_task_in_a_new_trace(client, make_settings):
    settings = make_settings()
    result = CliRunner().invoke(
        cli, ["enqueue", "-"], input='{"id": "a"}\n{"id": "b"}\n', env=settings_env(settings)
    )

    assert result.exit_code == 0, result.output
    traces = [
        parse_traceparent(m.header("traceparent")) for m in client.peek(settings.worker_queue)
    ]
    assert all(trace is not None for trace in traces)
    assert len({trace.trace_id for trace in traces if trace is not None}) == 2


def test_enqueue_keeps_the_callers_traceparent(client, make_settings):
    settings = make_settings()
    result = CliRunner().invoke(
        cli, ["enqueue", "--traceparent", CALLER, "-"], input="{}", env=settings_env(settings)
    )

    assert result.exit_code == 0, result.output
    [message] = client.peek(settings.worker_queue)
    assert message.header("traceparent") == CALLER


def test_enqueue_refuses_an_invalid_traceparent_without_echoing_it_raw(make_settings):
    result = CliRunner().invoke(
        cli,
        ["enqueue", "--traceparent", "\x1b[2J" + CALLER.upper(), "-"],
        input="{}",
        env=settings_env(make_settings()),
    )

    assert result.exit_code == 2
    assert "not a W3C traceparent" in result.stderr
    assert "\x1b" not in result.stderr


def test_every_json_log_line_of_a_task_carries_its_trace_id(client, make_settings, reply_queue):
    settings = make_settings()
    env = {**settings_env(settings), "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"}
    marker = f"the task speaks {uuid.uuid4().hex}"
    with WorkerProcess("framework_probe_worker:main", "run", env=env) as worker:
        wait_for(lambda: client.consumer_count(settings.worker_queue) == 1, 30)
        task_id = client.publish_task(
            settings.worker_queue,
            {"fail_times": 1, "log_message": marker, "progress_steps": 2},
            headers={"traceparent": CALLER},
            reply_to=reply_queue,
        )
        [reply] = client.wait_for_messages(reply_queue, 1, timeout=30)
        wait_for(lambda: "COMPLETED" in worker.output(), message="the COMPLETED line")
        output = worker.output()

    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    of_task = [
        line for line in lines if line.get("task_id") == task_id or marker in line["message"]
    ]
    messages = [line["message"] for line in of_task]
    assert sum(marker in message for message in messages) == 2  # once per attempt
    assert any(message.startswith("task failed (transient)") for message in messages)
    for status in ("PROCESSING", "RETRY_SCHEDULED", "COMPLETED"):
        assert any(message.startswith(f"progress {status}") for message in messages), status
    assert {line.get("trace_id") for line in of_task} == {CALLER_TRACE.trace_id}
    # Lines about the worker, not a task, carry no trace id.
    consuming = [line for line in lines if line["message"].startswith("consuming")]
    assert consuming and all("trace_id" not in line for line in consuming)
    assert reply.header("traceparent") == CALLER


def test_the_json_log_lines_of_a_dead_lettered_task_carry_its_trace_id(client, make_settings):
    settings = make_settings()
    env = {**settings_env(settings), "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"}
    dlq = dead_letter_queue_name(settings.worker_queue)
    with WorkerProcess("framework_probe_worker:main", "run", env=env) as worker:
        wait_for(lambda: client.consumer_count(settings.worker_queue) == 1, 30)
        task_id = client.publish_task(
            settings.worker_queue, {"fail_permanently": True}, headers={"traceparent": CALLER}
        )
        wait_for(lambda: client.message_count(dlq) == 1, 30, message="the dead letter")
        wait_for(lambda: "progress FAILED" in worker.output(), message="the FAILED line")
        output = worker.output()

    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    of_task = [line for line in lines if line.get("task_id") == task_id]
    messages = [line["message"] for line in of_task]
    for start in ("progress PROCESSING", "task failed (permanent)", "dead-lettered:"):
        assert any(message.startswith(start) for message in messages), start
    assert {line.get("trace_id") for line in of_task} == {CALLER_TRACE.trace_id}
