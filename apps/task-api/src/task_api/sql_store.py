"""TaskStore on SQL: one connection per process, guarded by a lock, explicit transactions."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any

from loguru import logger

from task_api.progress_rules import apply_report
from task_api.records import (
    HistoryEntry,
    ProgressReport,
    ReportResult,
    Status,
    TaskPage,
    TaskState,
)
from task_api.sql_dialects import Connection, Dialect, dialect_for
from task_api.sql_report_batch import (
    ROWS_PER_STATEMENT,
    apply_batch,
    history_entry,
    insert_history,
    update_state,
)
from task_api.storage import TaskStore

# Queries are assembled only from these constant column lists and fixed conditions; every value
# goes through a placeholder (hence the S608 exemptions below).
_TASK_COLUMNS = (
    "seq, id, queue, status, worker_type, progress, current_step, attempt, error_message,"
    " next_retry_at, result, payload, created_at, updated_at, published, trace_id"
)
_HISTORY_COLUMNS = (
    "status, worker_type, progress, current_step, attempt, error_message, next_retry_at,"
    " result, recorded_at"
)


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _load(value: Any) -> Any:
    return None if value is None else json.loads(value)


class SqlTaskStore(TaskStore):
    """A TaskStore for SQLite or PostgreSQL, the differences given by ``dialect``.

    One connection is shared by the server's threads under a lock: task-api's writes are
    short, and a single writer keeps SQLite free of "database is locked" retries.
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        #: The thread inside ``write_batch`` (it holds ``_lock`` and an open transaction).
        self._batch_thread: int | None = None

    @contextmanager
    def write_batch(self) -> Iterator[None]:
        with self._lock:
            conn = self._begin(self._dialect.begin_write)
            self._batch_thread = threading.get_ident()
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                self._rollback(conn)
                raise
            finally:
                self._batch_thread = None

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Connection]:
        if self._batch_thread == threading.get_ident() and self._conn is not None:
            # Inside this thread's write_batch: its transaction is open and its lock held. A
            # savepoint keeps each call atomic on its own, as it would be without the batch.
            conn = self._conn
            conn.execute("SAVEPOINT task_api_call")
            try:
                yield conn
            except BaseException:
                # A broken connection cannot roll back: the batch's COMMIT then fails.
                with suppress(Exception):
                    conn.execute("ROLLBACK TO SAVEPOINT task_api_call")
                    conn.execute("RELEASE SAVEPOINT task_api_call")
                raise
            conn.execute("RELEASE SAVEPOINT task_api_call")
            return
        with self._lock:
            conn = self._begin(self._dialect.begin_write if write else "BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                self._rollback(conn)
                raise

    def _begin(self, statement: str) -> Connection:
        if self._conn is None or self._dialect.is_broken(self._conn):
            self._conn = self._dialect.connect()
        try:
            self._conn.execute(statement)
        except Exception:
            if not self._dialect.is_broken(self._conn):
                raise
            # The server dropped the idle connection (a restart, a failover): nothing was done
            # yet in this transaction, so one fresh connection may simply start it again.
            self._conn = self._dialect.connect()
            self._conn.execute(statement)
        return self._conn

    def _rollback(self, conn: Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except Exception:
            # A broken connection has nothing left to roll back; the next call reconnects.
            if not self._dialect.is_broken(conn):
                raise

    def _run(self, conn: Connection, query: str, params: tuple[Any, ...] = ()) -> Any:
        return conn.execute(self._dialect.sql(query), params)

    def migrate(self) -> None:
        with self._transaction() as conn:
            self._run(conn, "CREATE TABLE IF NOT EXISTS task_api_schema (version INTEGER NOT NULL)")
            row = self._run(conn, "SELECT MAX(version) FROM task_api_schema").fetchone()
            current = row[0] or 0
            for version, statements in enumerate(self._dialect.migrations(), start=1):
                if version <= current:
                    continue
                for statement in statements:
                    self._run(conn, statement)
                self._run(conn, "INSERT INTO task_api_schema (version) VALUES (?)", (version,))

    def _row_to_state(self, row: Any) -> TaskState:
        created_at = self._dialect.from_db_time(row[12])
        updated_at = self._dialect.from_db_time(row[13])
        assert created_at is not None and updated_at is not None
        return TaskState(
            seq=int(row[0]),
            id=row[1],
            queue=row[2],
            status=Status(row[3]),
            worker_type=row[4],
            progress=int(row[5]),
            current_step=row[6],
            attempt=row[7],
            error_message=row[8],
            next_retry_at=self._dialect.from_db_time(row[9]),
            result=_load(row[10]),
            payload=_load(row[11]),
            created_at=created_at,
            updated_at=updated_at,
            published=bool(row[14]),
            trace_id=row[15],
        )

    def _select(self, conn: Connection, task_id: str, *, lock: bool) -> TaskState | None:
        query = f"SELECT {_TASK_COLUMNS} FROM task_api_tasks WHERE id = ?"  # noqa: S608
        if lock:
            query += self._dialect.lock_row
        row = self._run(conn, query, (task_id,)).fetchone()
        return None if row is None else self._row_to_state(row)

    def get(self, task_id: str) -> TaskState | None:
        with self._transaction(write=False) as conn:
            return self._select(conn, task_id, lock=False)

    def history(self, task_id: str) -> list[HistoryEntry]:
        with self._transaction(write=False) as conn:
            rows = self._run(
                conn,
                f"SELECT {_HISTORY_COLUMNS} FROM task_api_history"  # noqa: S608
                " WHERE task_id = ? ORDER BY seq",
                (task_id,),
            ).fetchall()
        entries = []
        for row in rows:
            recorded_at = self._dialect.from_db_time(row[8])
            assert recorded_at is not None
            entries.append(
                HistoryEntry(
                    status=Status(row[0]),
                    worker_type=row[1],
                    progress=row[2],
                    current_step=row[3],
                    attempt=row[4],
                    error_message=row[5],
                    next_retry_at=self._dialect.from_db_time(row[6]),
                    result=_load(row[7]),
                    recorded_at=recorded_at,
                )
            )
        return entries

    def _insert_new(
        self,
        conn: Connection,
        task_id: str,
        now: datetime,
        *,
        queue: str | None = None,
        payload: dict[str, Any] | None = None,
        lease_until: float | None = None,
        trace_id: str | None = None,
    ) -> bool:
        """Insert a QUEUED task unless the id exists; True when this statement inserted it."""
        stamp = self._dialect.to_db_time(now)
        submitted = payload is not None
        cursor = self._run(
            conn,
            "INSERT INTO task_api_tasks (id, queue, status, payload, submitted, published,"
            " publish_after, created_at, updated_at, trace_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (
                task_id,
                queue,
                Status.QUEUED.value,
                _dump(payload),
                int(submitted),
                # Only a submission has a message to publish; a task first seen in a report
                # was enqueued by someone else.
                int(not submitted),
                lease_until,
                stamp,
                stamp,
                trace_id,
            ),
        )
        return bool(cursor.rowcount == 1)

    def apply_report(self, report: ProgressReport, now: datetime) -> TaskState:
        with self._transaction() as conn:
            state = self._apply_one(conn, report, now).state
        assert state is not None  # only a refused report of a batch has none
        return state

    def _apply_one(self, conn: Connection, report: ProgressReport, now: datetime) -> ReportResult:
        # A task enqueued without task-api (e.g. the worker's `enqueue` command) is first
        # seen in a worker's report: it is created on the fly.
        self._insert_new(conn, report.task_id, now, trace_id=report.trace_id)
        current = self._select(conn, report.task_id, lock=True)
        assert current is not None
        new_state = apply_report(current, report, now)
        if new_state is None:
            return ReportResult(state=current)
        update_state(conn, self._dialect, new_state)
        insert_history(conn, self._dialect, [(report.task_id, history_entry(report, now))])
        return ReportResult(state=new_state, stored=True)

    def apply_reports(self, reports: Sequence[ProgressReport], now: datetime) -> list[ReportResult]:
        if not reports:
            return []
        with self._joined_batch():
            try:
                with self._transaction() as conn:
                    return apply_batch(conn, self._dialect, reports, now, self._select_locked)
            except Exception:
                if self._conn is None or self._dialect.is_broken(self._conn):
                    raise
                # One report the database refuses (e.g. a NUL character on PostgreSQL) fails
                # the multi-row statements: apply the batch report by report, so it fails alone.
                logger.warning(
                    "a batch of {} progress reports was refused; applying them one by one",
                    len(reports),
                )
            return [self._apply_alone(report, now) for report in reports]

    def _apply_alone(self, report: ProgressReport, now: datetime) -> ReportResult:
        try:
            with self._transaction() as conn:
                return self._apply_one(conn, report, now)
        except Exception as error:  # handed back as this report's result
            if self._conn is None or self._dialect.is_broken(self._conn):
                raise
            return ReportResult(state=None, error=error)

    @contextmanager
    def _joined_batch(self) -> Iterator[None]:
        """This thread's ``write_batch`` if it is inside one, else a new one."""
        if self._batch_thread == threading.get_ident():
            yield
            return
        with self.write_batch():
            yield

    def _select_locked(self, conn: Connection, task_ids: Sequence[str]) -> dict[str, TaskState]:
        states: dict[str, TaskState] = {}
        for start in range(0, len(task_ids), ROWS_PER_STATEMENT):
            chunk = task_ids[start : start + ROWS_PER_STATEMENT]
            marks = ", ".join("?" * len(chunk))
            rows = self._run(
                conn,
                f"SELECT {_TASK_COLUMNS} FROM task_api_tasks"  # noqa: S608
                # In id order, as inserted: replicas lock overlapping batches in one order.
                f" WHERE id IN ({marks}) ORDER BY id{self._dialect.lock_row}",
                tuple(chunk),
            ).fetchall()
            for row in rows:
                state = self._row_to_state(row)
                states[state.id] = state
        return states

    def record_submission(
        self,
        task_id: str,
        queue: str,
        payload: dict[str, Any],
        now: datetime,
        *,
        lease_until: float,
        trace_id: str | None = None,
    ) -> tuple[TaskState, bool]:
        with self._transaction() as conn:
            # On PostgreSQL a concurrent insert of the same id waits for this one's commit,
            # then inserts nothing: the row count is the one answer both can trust.
            created = self._insert_new(
                conn,
                task_id,
                now,
                queue=queue,
                payload=payload,
                lease_until=lease_until,
                trace_id=trace_id,
            )
            if created:
                entry = HistoryEntry(status=Status.QUEUED, recorded_at=now)
                insert_history(conn, self._dialect, [(task_id, entry)])
            state = self._select(conn, task_id, lock=False)
            assert state is not None
            return state, created

    def claim_unpublished(
        self, task_id: str, *, now: float, lease_until: float
    ) -> TaskState | None:
        with self._transaction() as conn:
            claimed = self._run(
                conn,
                "UPDATE task_api_tasks SET publish_after = ?"
                " WHERE id = ? AND published = 0 AND (publish_after IS NULL OR publish_after <= ?)",
                (lease_until, task_id, now),
            )
            if claimed.rowcount != 1:
                return None
            return self._select(conn, task_id, lock=False)

    def mark_published(self, task_id: str) -> None:
        with self._transaction() as conn:
            self._run(conn, "UPDATE task_api_tasks SET published = 1 WHERE id = ?", (task_id,))

    def release_claim(self, task_id: str, *, now: float) -> None:
        with self._transaction() as conn:
            self._run(
                conn,
                "UPDATE task_api_tasks SET publish_after = ? WHERE id = ? AND published = 0",
                (now, task_id),
            )

    def forget_unpublished(self, task_id: str) -> None:
        with self._transaction() as conn:
            deleted = self._run(
                conn,
                "DELETE FROM task_api_tasks WHERE id = ? AND published = 0 AND status = ?",
                (task_id, Status.QUEUED.value),
            )
            if deleted.rowcount:
                self._run(conn, "DELETE FROM task_api_history WHERE task_id = ?", (task_id,))

    def unpublished_due(self, *, now: float, limit: int) -> list[str]:
        with self._transaction(write=False) as conn:
            rows = self._run(
                conn,
                "SELECT id FROM task_api_tasks WHERE published = 0"
                " AND (publish_after IS NULL OR publish_after <= ?) ORDER BY seq LIMIT ?",
                (now, limit),
            ).fetchall()
        return [row[0] for row in rows]

    def list_tasks(
        self, *, status: str | None, queue: str | None, first: int, after_seq: int | None
    ) -> TaskPage:
        conditions: list[str] = []
        params: list[Any] = []
        if status is not None:
            conditions.append("status = ?")
            params.append(status)
        if queue is not None:
            conditions.append("queue = ?")
            params.append(queue)
        if after_seq is not None:
            conditions.append("seq < ?")
            params.append(after_seq)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        params.append(first + 1)
        with self._transaction(write=False) as conn:
            rows = self._run(
                conn,
                f"SELECT {_TASK_COLUMNS} FROM task_api_tasks{where}"  # noqa: S608
                " ORDER BY seq DESC LIMIT ?",
                tuple(params),
            ).fetchall()
        tasks = [self._row_to_state(row) for row in rows[:first]]
        return TaskPage(tasks=tasks, has_next_page=len(rows) > first)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def open_store(database_url: str) -> TaskStore:
    """Open the store that ``database_url`` names (``sqlite://...`` or ``postgresql://...``).

    A SQLite deployment never loads the PostgreSQL driver: the dialect imports it on connect.
    """
    return SqlTaskStore(dialect_for(database_url))
