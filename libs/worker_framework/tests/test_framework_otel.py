"""OpenTelemetry: spans exported over OTLP/HTTP when an endpoint is set; not even imported when not.

The receiver is a real HTTP server decoding the SDK's protobuf requests (``otlp_receiver``).
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner
from framework_probe_worker import ProbeWorker
from otlp_receiver import OtlpReceiver, ReceivedSpan
from worker_framework.cli import build_cli
from worker_framework.testing import WorkerProcess, settings_env, subprocess_env, wait_for
from worker_framework.tracing import parse_traceparent

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
#: Export batches after 50 ms instead of 5 s, so the tests need not stop the worker to see spans.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50"}
WAIT_S = 30.0


def otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **FAST_EXPORT}


def without_otel(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("OTEL_")}


def spans_named(receiver: OtlpReceiver, name: str, count: int) -> list[ReceivedSpan]:
    def arrived() -> list[ReceivedSpan] | None:
        spans = [span for span in receiver.spans_of(TRACE_ID) if span.name == name]
        return spans if len(spans) >= count else None

    spans = wait_for(arrived, WAIT_S, message=f"{count} spans named {name!r}")
    assert spans is not None
    return spans


def test_each_attempt_is_a_consumer_span_parented_on_the_incoming_traceparent(
    client, make_settings, reply_queue
):
    settings = make_settings()
    with OtlpReceiver() as receiver:
        env = {**settings_env(settings), **otel_env(receiver)}
        with WorkerProcess("framework_probe_worker:main", "run", env=env):
            wait_for(lambda: client.consumer_count(settings.worker_queue) == 1, WAIT_S)
            task_id = client.publish_task(
                settings.worker_queue,
                {"fail_times": 1},
                headers={"traceparent": CALLER},
                reply_to=reply_queue,
            )
            client.wait_for_messages(reply_queue, 1, timeout=WAIT_S)
            spans = spans_named(receiver, f"{settings.worker_queue} process", 2)

    assert receiver.paths[0] == "/v1/traces"
    first, second = sorted(spans, key=lambda span: span.attributes["task.attempt"])
    for span in (first, second):
        assert span.kind == ReceivedSpan.CONSUMER
        assert span.parent_span_id == PARENT_ID
        assert span.service_name == "probe"
        assert span.attributes["worker.type"] == "probe"
        assert span.attributes["messaging.destination.name"] == settings.worker_queue
        assert span.attributes["task.id"] == task_id
    assert (first.attributes["task.attempt"], first.attributes["task.outcome"]) == (
        1,
        "retry_scheduled",
    )
    assert first.error
    assert (second.attributes["task.attempt"], second.attributes["task.outcome"]) == (
        2,
        "completed",
    )
    assert not second.error


def test_enqueue_exports_a_producer_span_that_is_the_messages_parent(client, make_settings):
    settings = make_settings()
    with OtlpReceiver() as receiver:
        result = CliRunner().invoke(
            build_cli(ProbeWorker),
            ["enqueue", "--traceparent", CALLER, "-"],
            input="{}",
            env={**settings_env(settings), **otel_env(receiver)},
        )
        assert result.exit_code == 0, result.output
        # enqueue flushes its spans before it exits: nothing to wait for.
        [span] = [s for s in receiver.spans_of(TRACE_ID) if s.name.endswith(" publish")]

    [message] = client.peek(settings.worker_queue)
    sent = parse_traceparent(message.header("traceparent"))
    assert sent is not None
    assert span.kind == ReceivedSpan.PRODUCER
    assert span.parent_span_id == PARENT_ID
    assert (sent.trace_id, sent.parent_id) == (TRACE_ID, span.span_id)
    assert span.attributes["messaging.destination.name"] == settings.worker_queue


@pytest.mark.parametrize("configured", [False, True])
def test_without_an_endpoint_no_opentelemetry_module_is_imported(
    client, make_settings, reply_queue, tmp_path, configured
):
    """A worker that ran a task reports the opentelemetry modules it loaded (none, unless an
    endpoint is set: the second case shows the check can see them)."""
    settings = make_settings()
    loaded = tmp_path / "loaded.txt"
    report_at_exit = (
        "import atexit, os, pathlib, sys\n"
        "atexit.register(lambda: pathlib.Path(os.environ['LOADED_MODULES_FILE']).write_text("
        "' '.join(m for m in sys.modules if m.startswith('opentelemetry'))))\n"
        "import framework_probe_worker as m\n"
        "m.main()\n"
    )
    with OtlpReceiver() as receiver:
        env = without_otel(subprocess_env(**settings_env(settings)))
        env["LOADED_MODULES_FILE"] = str(loaded)
        if configured:
            env.update(otel_env(receiver))
        worker = subprocess.Popen(
            [sys.executable, "-c", report_at_exit, "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: client.consumer_count(settings.worker_queue) == 1, WAIT_S)
            client.publish_task(settings.worker_queue, {}, reply_to=reply_queue)
            client.wait_for_messages(reply_queue, 1, timeout=WAIT_S)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(WAIT_S) == 0
        finally:
            if worker.poll() is None:
                worker.kill()

    modules = loaded.read_text().split()
    if configured:
        assert "opentelemetry.sdk.trace" in modules
    else:
        assert modules == []


def test_command_help_imports_no_opentelemetry_module(make_settings):
    env = without_otel(subprocess_env(**settings_env(make_settings())))
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import framework_probe_worker as m; m.main()",
            # A command's help: the group's own --help no longer imports the commands.
            "run-task",
            "--help",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert "worker_framework.cli" in imported  # the check sees the framework's imports
    assert not [name for name in imported if name.startswith("opentelemetry")]
    assert "Usage" in result.stdout
