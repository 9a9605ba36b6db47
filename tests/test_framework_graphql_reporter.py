"""GraphQLReporter against a real task-api process: order, coalescing, batching, outages, auth."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from loguru import logger
from psycopg import sql
from task_api.testing import TaskApiServer, fetch_task, free_port
from worker_framework.graphql_reporter import RESULT_OMITTED_KEY, GraphQLReporter
from worker_framework.progress import ProgressUpdate, TaskStatus
from worker_framework.testing import wait_for

#: Generous: the assertions wait for delivery, they never measure it.
FLUSH_S = 30.0
#: Longer than any test: updates are sent only by a full batch or by close().
NEVER_S = 3600.0
#: Where a PostgreSQL-backed task-api gets a database of its own (created and dropped here).
POSTGRES_ADMIN_URL = os.environ.get(
    "TASK_API_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="module")
def api() -> Iterator[TaskApiServer]:
    """One open task-api for the tests that do not restart it."""
    with TaskApiServer() as server:
        yield server


@pytest.fixture(scope="module")
def postgres_api() -> Iterator[TaskApiServer]:
    """A task-api storing in a fresh PostgreSQL database, dropped afterwards."""
    name = f"reporter_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with TaskApiServer(database_url=f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}") as server:
            yield server
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Everything logged during the test, one formatted message per entry."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    yield lines
    logger.remove(sink)


def new_id() -> str:
    return f"rep-{uuid.uuid4().hex}"


def update(task_id: str, status: TaskStatus, **fields: object) -> ProgressUpdate:
    return ProgressUpdate(task_id=task_id, worker_type="probe", status=status, **fields)  # type: ignore[arg-type]


def processing(task_id: str, progress: int, attempt: int = 1) -> ProgressUpdate:
    return update(
        task_id,
        TaskStatus.PROCESSING,
        attempt=attempt,
        progress=progress,
        current_step=f"s{progress}",
    )


def test_updates_arrive_in_order_and_end_with_the_result(api):
    task_id = new_id()
    reporter = GraphQLReporter(api.url, None)

    reporter.report(processing(task_id, 0))
    for percent in range(10, 100, 10):
        reporter.report(processing(task_id, percent))
    reporter.report(update(task_id, TaskStatus.COMPLETED, attempt=1, result={"sent": 3}))
    reporter.close(FLUSH_S)

    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["status"] == "COMPLETED"
    assert task["result"] == {"sent": 3}
    assert task["currentStep"] == "s90"
    statuses = [entry["status"] for entry in task["history"]]
    # How many PROCESSING updates were coalesced depends on the sender's pace; the order not.
    assert statuses == ["PROCESSING"] * (len(statuses) - 1) + ["COMPLETED"]
    progress = [e["progress"] for e in task["history"] if e["progress"] is not None]
    assert progress == sorted(progress)


def test_progress_reported_within_the_linger_arrives_folded_into_the_final_status(api):
    task_id = new_id()
    reporter = GraphQLReporter(api.url, None, linger_s=NEVER_S)

    reporter.report(processing(task_id, 0))
    for percent in range(10, 100, 10):
        reporter.report(processing(task_id, percent))
    reporter.report(update(task_id, TaskStatus.COMPLETED, attempt=1, progress=100))
    reporter.close(FLUSH_S)

    task = fetch_task(api.url, task_id)
    assert task is not None
    history = [(e["status"], e["progress"], e["currentStep"]) for e in task["history"]]
    assert history == [("COMPLETED", 100, "s90")]


def test_a_step_too_long_for_the_api_is_shortened_and_the_final_status_still_arrives(api):
    task_id = new_id()
    reporter = GraphQLReporter(api.url, None, linger_s=NEVER_S)

    reporter.report(update(task_id, TaskStatus.PROCESSING, attempt=1, current_step="x" * 5000))
    reporter.report(update(task_id, TaskStatus.COMPLETED, attempt=1, progress=100))
    reporter.close(FLUSH_S)

    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["status"] == "COMPLETED"
    assert task["currentStep"] == "x" * 1000


def test_a_full_batch_is_sent_without_waiting_for_the_linger_to_end(api):
    ids = [new_id() for _ in range(4)]
    reporter = GraphQLReporter(api.url, None, max_batch=4, linger_s=NEVER_S)
    try:
        for task_id in ids:
            reporter.report(update(task_id, TaskStatus.COMPLETED, attempt=1))

        wait_for(lambda: all(fetch_task(api.url, task_id) for task_id in ids), timeout=FLUSH_S)
    finally:
        reporter.close(FLUSH_S)


def test_a_batch_that_is_no_power_of_two_arrives_whole_and_in_order(api):
    ids = [new_id() for _ in range(11)]
    reporter = GraphQLReporter(api.url, None, linger_s=NEVER_S)

    for task_id in ids:
        reporter.report(processing(task_id, 50))
        reporter.report(update(task_id, TaskStatus.COMPLETED, attempt=1))
    reporter.close(FLUSH_S)

    tasks = [fetch_task(api.url, task_id) for task_id in ids]
    assert [task["status"] if task else None for task in tasks] == ["COMPLETED"] * len(ids)


def test_on_postgresql_a_report_the_database_refuses_fails_alone_and_its_batch_is_stored(
    postgres_api,
):
    good = [new_id() for _ in range(3)]
    refused = new_id()
    # One request of four: PostgreSQL refuses text holding NUL, the pydantic model does not.
    reporter = GraphQLReporter(postgres_api.url, None, max_batch=4, linger_s=NEVER_S)
    try:
        reporter.report(update(good[0], TaskStatus.COMPLETED, attempt=1))
        reporter.report(update(refused, TaskStatus.PROCESSING, attempt=1, current_step="a\x00b"))
        reporter.report(update(good[1], TaskStatus.COMPLETED, attempt=1))
        reporter.report(update(good[2], TaskStatus.COMPLETED, attempt=1))

        wait_for(
            lambda: all(fetch_task(postgres_api.url, task_id) for task_id in good),
            timeout=FLUSH_S,
        )
    finally:
        reporter.close(0.2)
    # Its savepoint was rolled back: not even the row a first report creates is left.
    assert fetch_task(postgres_api.url, refused) is None


def test_retry_scheduled_and_failed_carry_their_details(api):
    task_id = new_id()
    retry_at = datetime.now(UTC) + timedelta(minutes=5)
    reporter = GraphQLReporter(api.url, None)

    reporter.report(processing(task_id, 0, attempt=1))
    reporter.report(
        update(
            task_id,
            TaskStatus.RETRY_SCHEDULED,
            attempt=1,
            error_message="temporary",
            next_retry_at=retry_at,
        )
    )
    reporter.report(processing(task_id, 0, attempt=2))
    reporter.report(update(task_id, TaskStatus.FAILED, attempt=2, error_message="permanent"))
    reporter.close(FLUSH_S)

    task = fetch_task(api.url, task_id)
    assert task is not None
    assert (task["status"], task["errorMessage"], task["attempt"]) == ("FAILED", "permanent", 2)
    [retry] = [entry for entry in task["history"] if entry["status"] == "RETRY_SCHEDULED"]
    assert datetime.fromisoformat(retry["nextRetryAt"]) == retry_at
    assert retry["errorMessage"] == "temporary"


def test_unsent_progress_is_coalesced_to_the_latest_while_status_changes_are_kept():
    server = TaskApiServer()
    task_id = new_id()
    reporter = GraphQLReporter(server.url, None)  # the API is not running yet
    try:
        for percent in range(100):
            reporter.report(processing(task_id, percent))
        reporter.report(update(task_id, TaskStatus.RETRY_SCHEDULED, attempt=1, error_message="x"))
        reporter.report(processing(task_id, 0, attempt=2))
        reporter.report(processing(task_id, 50, attempt=2))
        reporter.report(update(task_id, TaskStatus.COMPLETED, attempt=2, result={"ok": True}))
        server.start()
        reporter.close(FLUSH_S)

        task = fetch_task(server.url, task_id)
    finally:
        server.stop()
    assert task is not None
    history = [
        (e["status"], e["attempt"], e["progress"], e["currentStep"]) for e in task["history"]
    ]
    # One batch may have been in flight when the API was down; everything after it was
    # coalesced: the latest progress of an attempt rides on the status change that ends it.
    assert len(history) <= 4
    assert [entry[:2] for entry in history if entry[0] != "PROCESSING"] == [
        ("RETRY_SCHEDULED", 1),
        ("COMPLETED", 2),
    ]
    assert max(entry[2] or 0 for entry in history if entry[1] == 1) == 99
    assert (task["status"], task["attempt"], task["currentStep"]) == ("COMPLETED", 2, "s50")


def test_final_statuses_arrive_when_the_api_comes_up_after_the_updates():
    server = TaskApiServer()
    ids = [new_id() for _ in range(20)]
    reporter = GraphQLReporter(server.url, None)
    try:
        for task_id in ids:
            reporter.report(processing(task_id, 0))
            reporter.report(
                update(task_id, TaskStatus.COMPLETED, attempt=1, result={"id": task_id})
            )
        server.start()
        reporter.close(FLUSH_S)

        tasks = [fetch_task(server.url, task_id) for task_id in ids]
    finally:
        server.stop()
    assert [task["status"] if task else None for task in tasks] == ["COMPLETED"] * len(ids)


def test_with_the_api_down_reporting_returns_and_close_gives_up_at_its_deadline(log_lines):
    reporter = GraphQLReporter(f"http://127.0.0.1:{free_port()}/graphql", None)

    for n in range(1000):
        reporter.report(processing(f"down-{n}", 0))
        reporter.report(update(f"down-{n}", TaskStatus.COMPLETED, attempt=1))
    reporter.close(0.5)

    assert any("not delivered" in line for line in log_lines)


def test_a_full_queue_drops_pending_progress_before_any_status_change(log_lines):
    server = TaskApiServer()
    reporter = GraphQLReporter(server.url, None, max_pending=3, max_batch=1)
    progress_ids = [new_id() for _ in range(5)]
    final_ids = [new_id() for _ in range(3)]
    try:
        for task_id in progress_ids:
            reporter.report(processing(task_id, 10))
        for task_id in final_ids:
            reporter.report(update(task_id, TaskStatus.COMPLETED, attempt=1))
        server.start()
        reporter.close(FLUSH_S)

        finals = [fetch_task(server.url, task_id) for task_id in final_ids]
    finally:
        server.stop()
    assert [task["status"] if task else None for task in finals] == ["COMPLETED"] * 3
    assert any("progress queue full" in line for line in log_lines)


def test_the_bearer_token_is_sent_and_never_logged(log_lines):
    with TaskApiServer(tokens=["s3cret-token"]) as server:
        task_id = new_id()
        reporter = GraphQLReporter(server.url, "s3cret-token")

        reporter.report(update(task_id, TaskStatus.COMPLETED, attempt=1))
        reporter.close(FLUSH_S)

        task = fetch_task(server.url, task_id, token="s3cret-token")
    assert task is not None
    assert task["status"] == "COMPLETED"
    assert not any("s3cret-token" in line for line in log_lines)


def test_a_wrong_token_is_retried_until_close_and_not_logged(log_lines):
    with TaskApiServer(tokens=["right-token"]) as server:
        task_id = new_id()
        reporter = GraphQLReporter(server.url, "wrong-token")

        reporter.report(update(task_id, TaskStatus.COMPLETED, attempt=1))
        wait_for(lambda: any("HTTP 401" in line for line in log_lines), timeout=FLUSH_S)
        reporter.close(0.2)

        assert fetch_task(server.url, task_id, token="right-token") is None
    assert not any("wrong-token" in line for line in log_lines)


def test_an_update_the_api_rejects_as_invalid_is_dropped_and_later_ones_still_arrive(
    api, log_lines
):
    bad, good = new_id(), new_id()
    reporter = GraphQLReporter(api.url, None)

    reporter.report(update(bad, TaskStatus.PROCESSING, attempt=0))  # attempt must be >= 1
    reporter.report(update(good, TaskStatus.COMPLETED, attempt=1))
    reporter.close(FLUSH_S)

    assert fetch_task(api.url, bad) is None
    good_task = fetch_task(api.url, good)
    assert good_task is not None
    assert good_task["status"] == "COMPLETED"
    assert any("rejected" in line and "attempt" in line for line in log_lines)


def test_an_update_over_the_api_body_limit_arrives_without_its_result_and_its_batch_too(
    log_lines,
):
    server = TaskApiServer(extra_env={"TASK_API_MAX_BODY_BYTES": "4096"})
    small = [new_id() for _ in range(3)]
    huge = new_id()
    reporter = GraphQLReporter(server.url, None)  # the API is down: all queue up in one batch
    try:
        reporter.report(update(small[0], TaskStatus.COMPLETED, attempt=1))
        reporter.report(update(huge, TaskStatus.COMPLETED, attempt=1, result={"blob": "x" * 8000}))
        reporter.report(update(small[1], TaskStatus.COMPLETED, attempt=1))
        reporter.report(update(small[2], TaskStatus.COMPLETED, attempt=1))
        server.start()
        reporter.close(FLUSH_S)

        tasks = [fetch_task(server.url, task_id) for task_id in small]
        huge_task = fetch_task(server.url, huge)
    finally:
        server.stop()
    assert [task["status"] if task else None for task in tasks] == ["COMPLETED"] * 3
    assert huge_task is not None
    assert huge_task["status"] == "COMPLETED"
    assert huge_task["result"] == {RESULT_OMITTED_KEY: "result too large for the progress API"}
    assert any("too large" in line for line in log_lines)


def test_a_result_over_the_size_limit_is_left_out_and_the_final_status_arrives(api):
    task_id = new_id()
    reporter = GraphQLReporter(api.url, None, max_result_bytes=1000)

    reporter.report(update(task_id, TaskStatus.COMPLETED, attempt=1, result={"blob": "x" * 2000}))
    reporter.close(FLUSH_S)

    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["status"] == "COMPLETED"
    assert task["result"] == {RESULT_OMITTED_KEY: "result too large (2012 bytes)"}


def test_an_update_that_cannot_be_serialised_is_dropped_alone_and_its_batch_arrives(api, log_lines):
    good = [new_id() for _ in range(3)]
    reporter = GraphQLReporter(api.url, None, max_batch=4, linger_s=NEVER_S)
    try:
        reporter.report(update(good[0], TaskStatus.COMPLETED, attempt=1))
        # What a message id that is not UTF-8 used to become: bytes, which JSON cannot hold.
        reporter.report(update(b"id-\xff", TaskStatus.FAILED, attempt=1))  # type: ignore[arg-type]
        reporter.report(update(good[1], TaskStatus.COMPLETED, attempt=1))
        reporter.report(update(good[2], TaskStatus.COMPLETED, attempt=1))
        wait_for(lambda: all(fetch_task(api.url, task_id) for task_id in good), timeout=FLUSH_S)
    finally:
        reporter.close(0.2)
    assert any("cannot be serialised" in line for line in log_lines)


def test_an_update_the_schema_cannot_take_is_dropped_alone_and_its_batch_arrives(api, log_lines):
    good = [new_id() for _ in range(3)]
    bad = new_id()
    reporter = GraphQLReporter(api.url, None, max_batch=4, linger_s=NEVER_S)
    try:
        reporter.report(update(good[0], TaskStatus.COMPLETED, attempt=1))
        # GraphQL's Int is 32-bit: the variable is refused, and with it the whole request.
        reporter.report(update(bad, TaskStatus.COMPLETED, attempt=2**40))
        reporter.report(update(good[1], TaskStatus.COMPLETED, attempt=1))
        reporter.report(update(good[2], TaskStatus.COMPLETED, attempt=1))
        # Well within GRAPHQL_ERROR_RETRY_S: the update at fault is found, not waited out.
        wait_for(lambda: all(fetch_task(api.url, task_id) for task_id in good), timeout=15)
    finally:
        reporter.close(0.2)
    assert fetch_task(api.url, bad) is None
    assert any("32-bit" in line for line in log_lines)


def test_text_no_utf8_encoder_accepts_is_replaced_and_the_update_arrives(api):
    task_id = new_id()
    reporter = GraphQLReporter(api.url, None)

    reporter.report(
        update(task_id, TaskStatus.FAILED, attempt=1, error_message="bad \ud800 surrogate")
    )
    reporter.close(FLUSH_S)

    task = fetch_task(api.url, task_id)
    assert task is not None
    assert task["status"] == "FAILED"
    assert task["errorMessage"] == "bad ? surrogate"


def test_pending_updates_are_bounded_in_bytes_dropping_the_oldest_status_change(log_lines):
    server = TaskApiServer()
    ids = [new_id() for _ in range(4)]
    # Each update holds about 1 340 bytes: three fit in 4 500, the fourth pushes the first out.
    # Nothing is sent before close() (the linger never ends), so the queue holds all four.
    reporter = GraphQLReporter(server.url, None, max_pending_bytes=4500, linger_s=NEVER_S)
    try:
        for task_id in ids:
            reporter.report(
                update(task_id, TaskStatus.COMPLETED, attempt=1, result={"b": "x" * 990})
            )
        server.start()
        reporter.close(FLUSH_S)
        tasks = [fetch_task(server.url, task_id) for task_id in ids]
    finally:
        server.stop()
    assert [task["status"] if task else None for task in tasks] == [None] + ["COMPLETED"] * 3
    assert any("progress queue full" in line for line in log_lines)
