"""Progress goes to the log by default and to the GraphQL client when GRAPHQL_URL is set."""

from __future__ import annotations

import dataclasses
import inspect
import io

import pytest
from framework_probe_worker import ProbeWorker
from loguru import logger
from worker_framework import LogReporter, ProgressUpdate, TaskStatus
from worker_framework.cli import make_reporter
from worker_framework.logging import configure_logging
from worker_framework.testing import RecordingReporter, WorkerThread, wait_for, worker_settings


def test_without_graphql_url_progress_goes_to_the_log():
    assert isinstance(make_reporter(worker_settings(graphql_url=None)), LogReporter)


def test_with_graphql_url_the_graphql_reporter_is_used():
    from worker_framework.graphql_reporter import GraphQLReporter

    reporter = make_reporter(
        worker_settings(graphql_url="http://127.0.0.1:9/graphql", graphql_token="t0ken-value")
    )
    try:
        assert isinstance(reporter, GraphQLReporter)
    finally:
        reporter.close(0)


def _log_lines(level: str, *updates: ProgressUpdate) -> list[str]:
    stream = io.StringIO()
    configure_logging(worker_settings(log_level=level), stream=stream)
    try:
        reporter = LogReporter()
        for update in updates:
            reporter.report(update)
        reporter.close(1)
    finally:
        configure_logging(worker_settings())
        logger.complete()
    return stream.getvalue().splitlines()


PROCESSING_40 = ProgressUpdate(
    "task-7", "probe", TaskStatus.PROCESSING, attempt=2, progress=40, current_step="fetching"
)
COMPLETED = ProgressUpdate("task-7", "probe", TaskStatus.COMPLETED, attempt=2, progress=100)
FAILED = ProgressUpdate("task-7", "probe", TaskStatus.FAILED, attempt=2, error_message="boom")


def test_log_reporter_writes_one_line_per_update_bound_to_the_task():
    [line] = _log_lines("DEBUG", PROCESSING_40)

    assert "task_id=task-7 attempt=2" in line
    assert "PROCESSING 40% step=fetching" in line


def test_at_info_the_log_reporter_keeps_only_retries_and_failures():
    [line] = _log_lines("INFO", PROCESSING_40, COMPLETED, FAILED)

    assert "FAILED error=boom" in line


def test_progress_update_takes_its_fields_in_order_and_stays_immutable():
    fields = [field.name for field in dataclasses.fields(ProgressUpdate)]
    parameters = list(inspect.signature(ProgressUpdate).parameters)
    assert parameters == fields
    values = {name: f"value-{name}" for name in fields}
    update = ProgressUpdate(**values)  # type: ignore[arg-type]
    assert [getattr(update, name) for name in fields] == list(values.values())
    assert update == ProgressUpdate(*values.values())  # type: ignore[arg-type]
    assert hash(update) == hash(ProgressUpdate(**values))  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        update.progress = 5  # type: ignore[misc]
    assert dataclasses.replace(update, progress=5).progress == 5


def test_the_log_reporter_wants_only_the_updates_its_level_keeps():
    configure_logging(worker_settings(log_level="INFO"))
    try:
        reporter = LogReporter()
        assert not reporter.wants(TaskStatus.PROCESSING)
        assert not reporter.wants(TaskStatus.COMPLETED)
        assert reporter.wants(TaskStatus.RETRY_SCHEDULED)
        assert reporter.wants(TaskStatus.FAILED)
        assert LogReporter(routine_level="INFO").wants(TaskStatus.COMPLETED)
    finally:
        configure_logging(worker_settings())


class FailuresOnly(RecordingReporter):
    """Records updates, but declares that it wants only failures."""

    def wants(self, status: TaskStatus) -> bool:
        return status is TaskStatus.FAILED


def test_updates_a_reporter_does_not_want_are_never_reported(client, make_settings, reply_queue):
    settings = make_settings()
    reporter = FailuresOnly()
    with WorkerThread(ProbeWorker, settings, reporter=reporter):
        done = client.publish_task(
            settings.worker_queue, {"id": "ok", "progress_steps": 2}, reply_to=reply_queue
        )
        failed = client.publish_task(settings.worker_queue, {"id": "bad", "fail_permanently": True})
        client.wait_for_messages(reply_queue, 1)
        wait_for(lambda: reporter.for_task(failed) != [])
    # Stopped: the completed task was settled (its reply came) and reported nothing.
    assert reporter.for_task(done) == []
    assert [update.status for update in reporter.for_task(failed)] == [TaskStatus.FAILED]
