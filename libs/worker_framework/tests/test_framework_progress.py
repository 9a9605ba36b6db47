"""Progress goes to the log by default and to the GraphQL client when GRAPHQL_URL is set."""

from __future__ import annotations

import io

from loguru import logger
from worker_framework import LogReporter, ProgressUpdate, TaskStatus
from worker_framework.cli import make_reporter
from worker_framework.logging import configure_logging
from worker_framework.testing import worker_settings


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
