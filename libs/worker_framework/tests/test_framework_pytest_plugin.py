"""The pytest plugin the framework ships: its fixtures, and what they do without a broker."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from framework_probe_worker import ProbeWorker
from worker_framework import TaskStatus, WorkerSettings
from worker_framework.outcomes import Completed, DeadLettered, RetryScheduled
from worker_framework.testing import settings_env, subprocess_env, wait_for, worker_settings

BROKER_TEST = textwrap.dedent("""
    def test_needs_the_broker(client):
        raise AssertionError("must not run without a broker")
    """)


def probe(**overrides: object) -> ProbeWorker:
    return ProbeWorker(worker_settings(WorkerSettings, **overrides))


def test_run_task_completes_in_process_with_every_progress_update_and_the_final_status(run_task):
    run = run_task(probe(), {"id": "local-1", "progress_steps": 2})

    assert isinstance(run.outcome, Completed)
    assert run.result is not None and run.result.model_dump()["id"] == "local-1"
    assert [(u.status, u.progress) for u in run.updates] == [
        (TaskStatus.PROCESSING, 0),
        (TaskStatus.PROCESSING, 50),
        (TaskStatus.PROCESSING, 100),
        (TaskStatus.COMPLETED, 100),
    ]


def test_run_task_schedules_a_retry_for_a_transient_failure(run_task):
    run = run_task(probe(), {"id": "flaky", "fail_times": 1})

    assert isinstance(run.outcome, RetryScheduled)
    assert run.outcome.next_attempt == 2
    assert run.result is None
    assert run.updates[-1].status is TaskStatus.RETRY_SCHEDULED


def test_run_task_dead_letters_an_invalid_task_without_running_it(run_task):
    run = run_task(probe(), b'{"id": "bad", "fail_times": "often"}')

    assert isinstance(run.outcome, DeadLettered)
    assert run.outcome.error_type == "ValidationError"


def test_make_settings_uses_fast_retries_and_a_fresh_queue_each_time(make_settings):
    first, second = make_settings(), make_settings()

    assert first.worker_queue != second.worker_queue
    assert first.worker_initial_delay_ms < 1000  # the production default
    assert make_settings(worker_max_retries=1).worker_max_retries == 1


def test_worker_thread_consumes_until_the_test_ends(
    client, make_settings, reply_queue, worker_thread
):
    settings = make_settings()
    worker_thread(ProbeWorker, settings)

    client.publish_task(settings.worker_queue, {"id": "threaded"}, reply_to=reply_queue)

    [reply] = client.wait_for_messages(reply_queue, 1)
    assert reply.json()["id"] == "threaded"


def test_worker_process_runs_an_entry_point_against_the_test_broker(
    client, make_settings, reply_queue, worker_process
):
    settings = make_settings()
    worker = worker_process("framework_probe_worker:main", "run", env=settings_env(settings))
    wait_for(lambda: client.consumer_count(settings.worker_queue) == 1, 60, message="consuming")

    client.publish_task(settings.worker_queue, {"id": "in-a-process"}, reply_to=reply_queue)

    [reply] = client.wait_for_messages(reply_queue, 1, timeout=60)
    assert reply.json()["pid"] == worker.pid


def _unused_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return int(listener.getsockname()[1])


def _pytest_without_a_broker(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    test_file = tmp_path / "test_without_broker.py"
    test_file.write_text(BROKER_TEST)
    url = f"amqp://guest:s3cret-pw@127.0.0.1:{_unused_port()}/%2F"
    environment = subprocess_env(AMQP_URL=url, **env)
    environment.pop("PYTEST_PLUGINS", None)  # named with -p below, whoever runs this test
    if "CI" not in env:
        environment.pop("CI", None)
    plugin = ["-p", "worker_framework.pytest_plugin", "-p", "no:cacheprovider"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", *plugin, str(test_file)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def test_without_a_broker_a_fixture_skips_the_test_naming_amqp_url_and_not_its_password(
    tmp_path,
):
    completed = _pytest_without_a_broker(tmp_path)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "1 skipped" in completed.stdout
    assert "no RabbitMQ answers at AMQP_URL=amqp://guest:" in completed.stdout
    assert "s3cret-pw" not in completed.stdout + completed.stderr


def test_without_a_broker_under_ci_a_fixture_fails_the_test(tmp_path):
    completed = _pytest_without_a_broker(tmp_path, CI="true")

    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "1 error" in completed.stdout
    assert "(CI is set)" in completed.stdout
    assert "s3cret-pw" not in completed.stdout + completed.stderr
