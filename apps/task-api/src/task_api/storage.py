"""The storage interface of task-api.

The implementation (``task_api.sql_store``) and the choice of back end from the database URL
(``task_api.sql_store.open_store``) live beside each other, so that this module depends on
nothing but the records it stores.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from task_api.records import HistoryEntry, ProgressReport, ReportResult, TaskPage, TaskState


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

    @abc.abstractmethod
    def apply_reports(self, reports: Sequence[ProgressReport], now: datetime) -> list[ReportResult]:
        """Apply ``reports`` in order, as as many ``apply_report`` calls would, in one transaction.

        One result per report, in order. A report the database refuses fails alone (its result
        carries the error); the others are stored. Raises only when nothing could be stored
        (the database unreachable, the commit refused).
        """

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
        """Record a new QUEUED, unpublished task; ``(state, True)`` when this call created it.

        ``trace_id`` is the W3C trace id its message is published in.

        Whether this call created the row is the database's own answer to the insert, so of
        concurrent calls for one id exactly one gets True. The creator holds the publishing
        lease until ``lease_until`` (seconds since the epoch). An existing task is returned
        unchanged with False.
        """

    @abc.abstractmethod
    def claim_unpublished(
        self, task_id: str, *, now: float, lease_until: float
    ) -> TaskState | None:
        """Take the publishing lease of an unpublished task whose lease has ended.

        Returns its state when this call took the lease, None otherwise (published already,
        unknown, or another publisher holds the lease).
        """

    @abc.abstractmethod
    def mark_published(self, task_id: str) -> None:
        """Record that RabbitMQ confirmed the task's message."""

    @abc.abstractmethod
    def release_claim(self, task_id: str, *, now: float) -> None:
        """End the lease of an unpublished task early (its publish failed): retry at once."""

    @abc.abstractmethod
    def forget_unpublished(self, task_id: str) -> None:
        """Delete a task RabbitMQ refused, unless it was published (or reported on) since."""

    @abc.abstractmethod
    def unpublished_due(self, *, now: float, limit: int) -> list[str]:
        """Ids of unpublished tasks whose lease has ended, oldest first."""

    @abc.abstractmethod
    def list_tasks(
        self, *, status: str | None, queue: str | None, first: int, after_seq: int | None
    ) -> TaskPage:
        """Tasks newest first, filtered, starting after the task with sequence ``after_seq``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the database connection."""
