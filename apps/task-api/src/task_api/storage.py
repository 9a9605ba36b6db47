"""The storage interface of task-api and the choice of back end from the database URL."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from task_api.records import HistoryEntry, ProgressReport, TaskPage, TaskState


class TaskStore(abc.ABC):
    """Where tasks and their update history live. Every method is safe to call from any thread."""

    @abc.abstractmethod
    def migrate(self) -> None:
        """Create the schema, or bring an older one up to date."""

    @abc.abstractmethod
    def get(self, task_id: str) -> TaskState | None:
        """The task's current state, or None when it is unknown."""

    @abc.abstractmethod
    def history(self, task_id: str) -> list[HistoryEntry]:
        """The task's accepted updates, oldest first."""

    @abc.abstractmethod
    def apply_report(self, report: ProgressReport, now: datetime) -> TaskState:
        """Apply a progress report atomically (stale reports change nothing); return the state."""

    @contextmanager
    def write_batch(self) -> Iterator[None]:
        """Make the calls this thread makes inside the block one transaction.

        Each call stays atomic on its own (a failed one changes nothing), but all are committed
        together at the end, or none when the block raises or the commit fails. task-api opens
        one per request that only reports progress: a batch of reports costs one commit. Other
        threads wait until the block ends, so it must not wait on anything but the store. The
        default runs each call in its own transaction.
        """
        yield

    @abc.abstractmethod
    def claim_submission(
        self, task_id: str, queue: str, payload: dict[str, Any], now: datetime
    ) -> tuple[TaskState, bool]:
        """Record a new QUEUED task; ``(state, True)`` when this call created it.

        An existing task is returned unchanged with False, which makes submission idempotent.
        """

    @abc.abstractmethod
    def forget_submission(self, task_id: str) -> None:
        """Undo a claim whose message could not be published (only if nothing else happened)."""

    @abc.abstractmethod
    def list_tasks(
        self, *, status: str | None, queue: str | None, first: int, after_seq: int | None
    ) -> TaskPage:
        """Tasks newest first, filtered, starting after the task with sequence ``after_seq``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the database connection."""


def open_store(database_url: str) -> TaskStore:
    """Open the store that ``database_url`` names (``sqlite://...`` or ``postgresql://...``)."""
    # Imported here so that a SQLite deployment never needs the PostgreSQL driver loaded.
    from task_api.sql_dialects import dialect_for
    from task_api.sql_store import SqlTaskStore

    return SqlTaskStore(dialect_for(database_url))
