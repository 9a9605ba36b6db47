"""Every command of the worker CLI, through click's runner against the real broker."""

from __future__ import annotations

import json
import signal

import pytest
from click.testing import CliRunner
from framework_probe_worker import ProbeWorker
from hostile_producer import HostileProducer
from worker_framework import TaskStatus
from worker_framework.cli import build_cli
from worker_framework.retry_policy import dead_letter_queue_name
from worker_framework.testing import (
    RecordingReporter,
    WorkerProcess,
    WorkerThread,
    amqp_url,
    settings_env,
    wait_for,
)

cli = build_cli(ProbeWorker)


def invoke(settings, *args, input=None, **env):
    if settings is None:
        environment = {"AMQP_URL": amqp_url(), "WORKER_QUEUE": "unused-queue"}
    else:
        environment = settings_env(settings)
    environment.update(env)
    return CliRunner().invoke(cli, list(args), input=input, env=environment)


def make_dead_letters(client, settings, *tasks):
    with WorkerThread(ProbeWorker, settings):
        for task in tasks:
            client.publish_task(settings.worker_queue, task)
        client_dlq = dead_letter_queue_name(settings.worker_queue)
        wait_for(lambda: client.message_count(client_dlq) == len(tasks))


def test_run_task_prints_result_json_and_exits_zero(tmp_path):
    task_file = tmp_path / "task.json"
    task_file.write_text('{"id": "local-1"}')
    result = invoke(None, "run-task", str(task_file))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == "local-1"


def test_run_task_reads_stdin_and_exits_one_when_the_task_fails():
    result = invoke(None, "run-task", "-", input='{"id": "doomed", "fail_permanently": true}')
    assert result.exit_code == 1
    assert "told to fail permanently" in result.stderr


DEEPLY_NESTED = "[" * 100_000


@pytest.mark.parametrize(
    "body", ["{not json", '{"id": "x", "fail_times": "many"}', "[1]", DEEPLY_NESTED]
)
def test_run_task_exits_two_on_invalid_input(body):
    result = invoke(None, "run-task", "-", input=body)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid task")


def test_enqueue_publishes_one_object_with_attempt_one_and_prints_its_id(client, make_settings):
    settings = make_settings()
    result = invoke(settings, "enqueue", "-", input='{"id": "given-id"}')
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["given-id"]
    [message] = client.peek(settings.worker_queue)
    assert message.json() == {"id": "given-id"}
    assert message.message_id == "given-id"
    assert message.header("x-attempt") == 1


def test_enqueue_accepts_json_lines_and_generates_missing_ids(client, make_settings):
    settings = make_settings()
    result = invoke(settings, "enqueue", "-", input='{"id": "a"}\n\n{"sleep_s": 0}\n{"id": "c"}\n')
    assert result.exit_code == 0, result.output
    ids = result.stdout.split()
    assert len(ids) == 3 and ids[0] == "a" and ids[2] == "c" and ids[1]
    assert [m.json()["id"] for m in client.peek(settings.worker_queue)] == ids


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "empty"),
        ('{"id": "a"}\nnope\n', "line 2"),
        ("[1]", "not a JSON object"),
        ('{"fail_times": "x"}', "invalid"),
        (DEEPLY_NESTED, "nested too deeply"),
        (f'{{"id": "a"}}\n{DEEPLY_NESTED}\n', "line 2"),
    ],
)
def test_enqueue_rejects_bad_input_with_usage_error(make_settings, body, reason):
    result = invoke(make_settings(), "enqueue", "-", input=body)
    assert result.exit_code == 2
    assert reason in result.stderr


def test_dlq_list_shows_id_error_attempts_and_failed_at_without_removing(client, make_settings):
    settings = make_settings()
    make_dead_letters(client, settings, {"id": "dead-1", "fail_permanently": True})
    result = invoke(settings, "dlq", "list")
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    assert line.startswith("dead-1\tWorkerError\tattempts=1\t")
    assert "told to fail permanently" in line
    as_json = json.loads(invoke(settings, "dlq", "list", "--json").stdout)
    assert as_json["id"] == "dead-1" and as_json["attempts"] == 1 and as_json["failed_at"]
    assert client.message_count(dead_letter_queue_name(settings.worker_queue)) == 1


def test_dlq_list_prints_one_line_per_dead_letter_whatever_its_headers_hold(client, make_settings):
    settings = make_settings()
    dlq_name = dead_letter_queue_name(settings.worker_queue)
    client.declare_reply_queue(dlq_name)
    with HostileProducer() as producer:
        producer.publish(
            dlq_name,
            b"not json",
            {
                "x-error-type": b"Bad\xffType",
                "x-error-message": "line one\nline two\tand a tab",
                "x-attempt": "123456789012345678901",
                "x-dropped-headers": "x-huge: integer beyond 64 bits, sent as text",
            },
            message_id=b"id-\xfe",
        )
    result = invoke(settings, "dlq", "list")
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    assert line.split("\t")[:3] == ["id-\ufffd", "Bad\ufffdType", "attempts=1000000"]
    assert "line one line two and a tab" in line
    [entry] = [
        json.loads(text) for text in invoke(settings, "dlq", "list", "--json").stdout.splitlines()
    ]
    assert entry["dropped_headers"] == "x-huge: integer beyond 64 bits, sent as text"


def test_dlq_list_and_replay_handle_a_dead_letter_nested_too_deeply_to_decode(
    client, make_settings
):
    settings = make_settings()
    make_dead_letters(client, settings, DEEPLY_NESTED.encode())
    [dead] = client.peek(dead_letter_queue_name(settings.worker_queue))
    listed = invoke(settings, "dlq", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.startswith(f"{dead.message_id}\tInvalidJSON\t")
    replayed = invoke(settings, "dlq", "replay")
    assert replayed.exit_code == 0, replayed.output
    assert replayed.stdout.split() == [dead.message_id]
    [message] = client.peek(settings.worker_queue)
    assert message.body == DEEPLY_NESTED.encode()


def test_dlq_replay_round_trip_resets_attempts_and_the_task_completes(
    client, make_settings, reply_queue
):
    failing = make_settings(worker_max_retries=0)
    make_dead_letters(client, failing, {"id": "phoenix", "fail_times": 1})
    result = invoke(failing, "dlq", "replay")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["phoenix"]
    assert client.message_count(dead_letter_queue_name(failing.worker_queue)) == 0
    [replayed] = client.peek(failing.worker_queue)
    assert replayed.header("x-attempt") == 1
    assert replayed.header("x-error-type") is None
    retrying = make_settings(worker_queue=failing.worker_queue, worker_max_retries=1)
    reporter = RecordingReporter()
    with WorkerThread(ProbeWorker, retrying, reporter=reporter):
        completed = wait_for(
            lambda: [u for u in reporter.for_task("phoenix") if u.status is TaskStatus.COMPLETED]
        )
    assert completed[0].attempt == 2
    assert client.message_count(dead_letter_queue_name(failing.worker_queue)) == 0


def test_dlq_replay_by_id_leaves_the_other_dead_letters(client, make_settings):
    settings = make_settings()
    make_dead_letters(
        client,
        settings,
        {"id": "keep", "fail_permanently": True},
        {"id": "move", "fail_permanently": True},
    )
    result = invoke(settings, "dlq", "replay", "--id", "move")
    assert result.stdout.split() == ["move"]
    assert [m.json()["id"] for m in client.peek(dead_letter_queue_name(settings.worker_queue))] == [
        "keep"
    ]
    assert [m.json()["id"] for m in client.peek(settings.worker_queue)] == ["move"]


def test_dlq_purge_needs_confirmation_and_deletes_every_dead_letter(client, make_settings):
    settings = make_settings()
    make_dead_letters(client, settings, {"fail_permanently": True}, {"fail_permanently": True})
    refused = invoke(settings, "dlq", "purge", input="n\n")
    assert refused.exit_code == 1
    assert client.message_count(dead_letter_queue_name(settings.worker_queue)) == 2
    result = invoke(settings, "dlq", "purge", "--yes")
    assert result.exit_code == 0
    assert "purged 2" in result.stdout
    assert client.message_count(dead_letter_queue_name(settings.worker_queue)) == 0


def test_healthcheck_exits_zero_when_broker_reachable_and_queue_exists(make_settings):
    settings = make_settings()
    assert invoke(settings, "enqueue", "-", input="{}").exit_code == 0  # declares the queues
    assert invoke(settings, "healthcheck").exit_code == 0


def test_healthcheck_exits_one_when_the_queue_is_missing(make_settings):
    result = invoke(make_settings(), "healthcheck")
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


def test_healthcheck_exits_one_when_the_broker_is_unreachable_without_leaking_the_password(
    make_settings,
):
    result = invoke(
        make_settings(), "healthcheck", AMQP_URL="amqp://guest:hunter2secret@127.0.0.1:1/%2F"
    )
    assert result.exit_code == 1
    assert "cannot reach RabbitMQ" in result.stderr
    assert "hunter2secret" not in result.output


@pytest.mark.parametrize(
    ("args", "stdin"),
    [(["enqueue", "-"], '{"id": "t"}'), (["dlq", "list"], None), (["dlq", "purge", "--yes"], None)],
)
def test_every_broker_command_reports_an_unreachable_broker_in_one_line_and_exits_one(
    make_settings, args, stdin
):
    url = "amqp://guest:hunter2secret@127.0.0.1:1/%2F"
    result = invoke(make_settings(), *args, input=stdin, AMQP_URL=url)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach RabbitMQ")
    assert result.stderr.count("\n") == 1
    assert "hunter2secret" not in result.output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WORKER_PREFETCH", "lots"),
        ("WORKER_QUEUE_TYPE", "stream"),
        ("LOG_LEVEL", "LOUD"),
        ("AMQP_URL", "http://u:pw@x"),
        ("GRAPHQL_URL", "ftp://u:pw@x/graphql"),
    ],
)
def test_invalid_setting_exits_two_with_one_line_naming_the_variable(variable, value):
    result = invoke(None, "healthcheck", **{variable: value})
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert variable in line
    assert "pw@" not in line


def test_usage_errors_exit_two():
    assert invoke(None, "no-such-command").exit_code == 2
    assert invoke(None, "run-task").exit_code == 2
    assert invoke(None, "dlq", "list", "--limit", "0").exit_code == 2


def test_help_needs_no_configuration():
    result = CliRunner().invoke(cli, ["--help"], env={"WORKER_PREFETCH": "broken"})
    assert result.exit_code == 0
    for command in ("run", "run-task", "enqueue", "dlq", "healthcheck"):
        assert command in result.stdout


def test_no_command_means_run_and_every_task_log_line_carries_its_context(
    client, make_settings, reply_queue
):
    settings = make_settings()
    env = {**settings_env(settings), "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"}
    with WorkerProcess("framework_probe_worker:main", env=env) as worker:
        wait_for(lambda: client.consumer_count(settings.worker_queue) == 1)
        client.publish_task(
            settings.worker_queue, {"id": "ctx-1", "fail_times": 1}, reply_to=reply_queue
        )
        client.wait_for_messages(reply_queue, 1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()
        records = [json.loads(line) for line in worker.output().splitlines()]
    task_lines = [record for record in records if record.get("task_id") == "ctx-1"]
    assert len(task_lines) >= 4  # processing, failure, retry scheduled, processing, completed
    for record in task_lines:
        assert record["queue"] == settings.worker_queue
        assert record["worker_type"] == "probe"
        assert record["attempt"] in (1, 2)
    assert any(record["message"].startswith("stopping") for record in records)
