"""TaskStore.apply_reports on real SQLite and PostgreSQL: a batch does what one-by-one does."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from task_api.records import ProgressReport, Status
from task_api.sql_store import open_store
from task_api.storage import TaskStore

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of each kind (SQLite: a file of this test's own)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_database_url")
    else:
        url = f"sqlite:///{tmp_path / 'tasks.db'}"
    store = open_store(url)
    store.migrate()
    store.close()
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[TaskStore]:
    opened = open_store(database_url)
    try:
        yield opened
    finally:
        opened.close()


def processing(task_id: str, progress: int, attempt: int = 1) -> ProgressReport:
    return ProgressReport(
        task_id=task_id,
        worker_type="w",
        status=Status.PROCESSING,
        progress=progress,
        current_step=f"at {progress}",
        attempt=attempt,
    )


def outcome(task_id: str, status: Status, attempt: int = 1) -> ProgressReport:
    return ProgressReport(
        task_id=task_id, worker_type="w", status=status, attempt=attempt, result={"n": 1}
    )


def mixed_reports(a: str, b: str, c: str) -> list[ProgressReport]:
    """Fresh, stale, terminal and after-terminal reports for three tasks, interleaved."""
    return [
        processing(a, 10),
        processing(b, 20, attempt=2),
        processing(a, 50),
        processing(a, 30),  # stale: progress went back
        processing(b, 90, attempt=1),  # stale: an older attempt
        outcome(a, Status.COMPLETED),
        processing(a, 99),  # ignored: the attempt has its outcome
        outcome(c, Status.FAILED),
        outcome(a, Status.FAILED),  # ignored: a second outcome
    ]


def test_a_batch_stores_fresh_reports_and_ignores_stale_and_after_terminal_ones(store):
    a, b, c = (f"batch-{uuid.uuid4().hex}" for _ in range(3))

    results = store.apply_reports(mixed_reports(a, b, c), NOW)

    assert [r.stored for r in results] == [True, True, True, False, False, True, False, True, False]
    assert all(r.error is None for r in results)
    assert [r.state.progress for r in results if r.state is not None][:3] == [10, 20, 50]
    task_a = store.get(a)
    assert task_a is not None
    assert (task_a.status, task_a.progress, task_a.current_step) == (Status.COMPLETED, 100, "at 50")
    assert [(e.status, e.progress) for e in store.history(a)] == [
        (Status.PROCESSING, 10),
        (Status.PROCESSING, 50),
        (Status.COMPLETED, None),
    ]
    assert [(e.status, e.attempt) for e in store.history(b)] == [(Status.PROCESSING, 2)]
    task_c = store.get(c)
    assert task_c is not None and task_c.status is Status.FAILED and task_c.result == {"n": 1}


def test_a_batch_leaves_the_same_states_and_history_as_the_reports_one_by_one(store):
    batch_ids = [f"batch-{uuid.uuid4().hex}" for _ in range(3)]
    single_ids = [f"single-{uuid.uuid4().hex}" for _ in range(3)]
    # Tasks that existed before, with a state for the reports to be judged against.
    for task_id in (batch_ids[1], single_ids[1]):
        store.apply_report(processing(task_id, 60, attempt=1), NOW)

    batch_results = store.apply_reports(mixed_reports(*batch_ids), NOW)
    single_results = [store.apply_report(report, NOW) for report in mixed_reports(*single_ids)]

    renamed = dict(zip(batch_ids, single_ids, strict=True))

    def comparable(state):  # - a test helper
        return replace(state, id=renamed.get(state.id, state.id), seq=0, created_at=NOW)

    assert [comparable(r.state) for r in batch_results] == [comparable(s) for s in single_results]
    for batch_id, single_id in renamed.items():
        assert comparable(store.get(batch_id)) == comparable(store.get(single_id))
        assert store.history(batch_id) == store.history(single_id)


def test_a_report_that_cannot_be_stored_fails_alone(store):
    good, bad = f"good-{uuid.uuid4().hex}", f"bad-{uuid.uuid4().hex}"
    unstorable = replace(outcome(bad, Status.COMPLETED), result={"a set": {1, 2}})

    results = store.apply_reports(
        [processing(good, 10), unstorable, outcome(good, Status.COMPLETED)], NOW
    )

    assert [r.stored for r in results] == [True, False, True]
    assert isinstance(results[1].error, TypeError) and results[1].state is None
    task = store.get(good)
    assert task is not None and task.status is Status.COMPLETED
    assert len(store.history(good)) == 2
    bad_task = store.get(bad)
    assert bad_task is None or bad_task.status is Status.QUEUED
    assert store.history(bad) == []


def test_a_text_postgresql_refuses_fails_alone_and_the_others_are_stored(store, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite stores a NUL character")
    good, bad = f"good-{uuid.uuid4().hex}", f"bad-{uuid.uuid4().hex}"
    refused = replace(processing(bad, 10), current_step="nul \x00 inside")

    results = store.apply_reports([processing(good, 10), refused, processing(good, 20)], NOW)

    assert [r.stored for r in results] == [True, False, True]
    assert results[1].error is not None
    task = store.get(good)
    assert task is not None and task.progress == 20
    assert store.history(bad) == []


def test_concurrent_batches_for_the_same_tasks_lose_no_update_and_never_deadlock(database_url):
    tasks = [f"race-{uuid.uuid4().hex}" for _ in range(5)]
    failures: list[BaseException] = []

    def report(parity: int) -> None:
        # Each thread is a task-api replica of its own (its own connection); the second sends
        # its batches in the reverse task order, which would deadlock unsorted row locks.
        replica = open_store(database_url)
        order = tasks if parity == 0 else tasks[::-1]
        try:
            for progress in range(parity, 100, 2):
                replica.apply_reports([processing(t, progress) for t in order], NOW)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)
        finally:
            replica.close()

    threads = [threading.Thread(target=report, args=(parity,)) for parity in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    reader = open_store(database_url)
    try:
        for task_id in tasks:
            task = reader.get(task_id)
            assert task is not None and task.progress == 99
            stored = [entry.progress or 0 for entry in reader.history(task_id)]
            # Every stored update moved the task forward: no batch judged a stale state.
            assert stored == sorted(set(stored)), stored
            assert stored[-1] == 99
    finally:
        reader.close()
