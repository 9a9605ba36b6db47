"""A batch of progress reports applied with a few multi-row statements, whatever its size.

For one batch, in one transaction: one INSERT of the tasks seen for the first time, one SELECT
of the batch's tasks (locked on PostgreSQL), the rules of ``task_api.progress_rules`` applied in
Python in the reports' order, then one upsert of the tasks that changed and one INSERT of their
history. The result is what applying the reports one by one gives (the same rules, in the same
order), at a fraction of the round trips: a savepoint and four statements per report before.

Concurrency: task ids are inserted and locked in sorted order, so two task-api replicas applying
overlapping batches on PostgreSQL wait for each other instead of deadlocking; SQLite takes its
write lock with ``BEGIN IMMEDIATE``.

Columns: ``TASK_COLUMNS`` and ``HISTORY_COLUMNS`` name what a report writes and where each value
comes from, for a batch and for a report applied alone (``update_state``, ``insert_history``);
a column carried by reports is one more line in each.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from task_api.progress_rules import apply_report
from task_api.records import HistoryEntry, ProgressReport, ReportResult, Status, TaskState
from task_api.sql_dialects import Connection, Dialect

# Statements are assembled only from the constant column names below and "?" placeholders;
# every value goes through a placeholder (hence the S608 exemptions).

#: Rows per statement: well within SQLite's 32 766 and PostgreSQL's 65 535 parameters.
ROWS_PER_STATEMENT = 500

Column = tuple[str, Callable[[Any, Dialect], Any]]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


#: The task row's columns a report changes, read from the new TaskState.
TASK_COLUMNS: tuple[Column, ...] = (
    ("status", lambda s, d: s.status.value),
    ("worker_type", lambda s, d: s.worker_type),
    ("progress", lambda s, d: s.progress),
    ("current_step", lambda s, d: s.current_step),
    ("attempt", lambda s, d: s.attempt),
    ("error_message", lambda s, d: s.error_message),
    ("next_retry_at", lambda s, d: d.to_db_time(s.next_retry_at)),
    ("result", lambda s, d: _json(s.result)),
    ("updated_at", lambda s, d: d.to_db_time(s.updated_at)),
    ("trace_id", lambda s, d: s.trace_id),
)

#: The history's columns (besides ``task_id``), read from the HistoryEntry of a stored report.
HISTORY_COLUMNS: tuple[Column, ...] = (
    ("status", lambda e, d: e.status.value),
    ("worker_type", lambda e, d: e.worker_type),
    ("progress", lambda e, d: e.progress),
    ("current_step", lambda e, d: e.current_step),
    ("attempt", lambda e, d: e.attempt),
    ("error_message", lambda e, d: e.error_message),
    ("next_retry_at", lambda e, d: d.to_db_time(e.next_retry_at)),
    ("result", lambda e, d: _json(e.result)),
    ("recorded_at", lambda e, d: d.to_db_time(e.recorded_at)),
)

Select = Callable[[Connection, Sequence[str]], dict[str, TaskState]]


def apply_batch(
    conn: Connection,
    dialect: Dialect,
    reports: Sequence[ProgressReport],
    now: datetime,
    select_locked: Select,
) -> list[ReportResult]:
    """Apply ``reports`` in order inside the caller's transaction; one result per report.

    ``select_locked`` reads the current states of the given ids (locking them where the
    database can). Raises when a statement fails: the caller rolls the batch back.
    """
    task_ids = sorted({report.task_id for report in reports})
    # A task enqueued without task-api (e.g. the worker's `enqueue` command) is first seen in
    # a worker's report: it is created on the fly, as apply_report does.
    _insert_missing(conn, dialect, task_ids, now)
    states = select_locked(conn, task_ids)
    results: list[ReportResult] = []
    history: list[tuple[str, HistoryEntry]] = []
    for report in reports:
        current = states[report.task_id]
        new_state = apply_report(current, report, now)
        if new_state is None:
            results.append(ReportResult(state=current))
            continue
        states[report.task_id] = new_state
        results.append(ReportResult(state=new_state, stored=True))
        history.append((report.task_id, history_entry(report, now)))
    changed = sorted({task_id for task_id, _ in history})
    _upsert_states(conn, dialect, [states[task_id] for task_id in changed])
    insert_history(conn, dialect, history)
    return results


def history_entry(report: ProgressReport, now: datetime) -> HistoryEntry:
    """The history entry a stored report leaves."""
    return HistoryEntry(
        status=report.status,
        worker_type=report.worker_type,
        progress=report.progress,
        current_step=report.current_step,
        attempt=report.attempt,
        error_message=report.error_message,
        next_retry_at=report.next_retry_at,
        result=report.result,
        recorded_at=now,
    )


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[n : n + ROWS_PER_STATEMENT] for n in range(0, len(items), ROWS_PER_STATEMENT)]


def _values(rows: int, columns: int) -> str:
    row = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * rows)


def _insert_missing(
    conn: Connection, dialect: Dialect, task_ids: Sequence[str], now: datetime
) -> None:
    stamp = dialect.to_db_time(now)
    for chunk in _chunks(task_ids):
        params: list[Any] = []
        for task_id in chunk:
            # As apply_report creates it: no message of task-api's own to publish.
            params += [task_id, Status.QUEUED.value, 0, 1, stamp, stamp]
        conn.execute(
            dialect.sql(
                "INSERT INTO task_api_tasks (id, status, submitted, published, created_at,"  # noqa: S608
                f" updated_at) VALUES {_values(len(chunk), 6)} ON CONFLICT (id) DO NOTHING"
            ),
            params,
        )


def _upsert_states(conn: Connection, dialect: Dialect, states: Sequence[TaskState]) -> None:
    """Write the new states of existing (locked) rows: an upsert is a multi-row UPDATE that
    SQLite and PostgreSQL spell alike."""
    names = [name for name, _ in TASK_COLUMNS]
    updates = ", ".join(f"{name} = excluded.{name}" for name in names)
    for chunk in _chunks(states):
        params: list[Any] = []
        for state in chunk:
            params.append(state.id)
            params += [value(state, dialect) for _, value in TASK_COLUMNS]
            params.append(dialect.to_db_time(state.created_at))
        conn.execute(
            dialect.sql(
                f"INSERT INTO task_api_tasks (id, {', '.join(names)}, created_at)"  # noqa: S608
                f" VALUES {_values(len(chunk), len(names) + 2)}"
                # A report proves the message reached a worker: the outbox must not send it again.
                f" ON CONFLICT (id) DO UPDATE SET {updates}, published = 1"
            ),
            params,
        )


def update_state(conn: Connection, dialect: Dialect, state: TaskState) -> None:
    """Write the new state of one existing (locked) task row (a report that applies alone).

    A report proves the message reached a worker: the outbox must not send it again.
    """
    assignments = ", ".join(f"{name} = ?" for name, _ in TASK_COLUMNS)
    conn.execute(
        dialect.sql(
            f"UPDATE task_api_tasks SET {assignments}, published = 1 WHERE id = ?"  # noqa: S608
        ),
        [*(value(state, dialect) for _, value in TASK_COLUMNS), state.id],
    )


def insert_history(
    conn: Connection, dialect: Dialect, entries: Sequence[tuple[str, HistoryEntry]]
) -> None:
    """Append ``(task_id, entry)`` rows to the history, in order."""
    names = ", ".join(name for name, _ in HISTORY_COLUMNS)
    # In the reports' order: the history is read back by sequence number.
    for chunk in _chunks(entries):
        params: list[Any] = []
        for task_id, entry in chunk:
            params.append(task_id)
            params += [value(entry, dialect) for _, value in HISTORY_COLUMNS]
        conn.execute(
            dialect.sql(
                f"INSERT INTO task_api_history (task_id, {names})"  # noqa: S608
                f" VALUES {_values(len(chunk), len(HISTORY_COLUMNS) + 1)}"
            ),
            params,
        )
