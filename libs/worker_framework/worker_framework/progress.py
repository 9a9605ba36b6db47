"""Task progress: the statuses, one update, and where updates go.

A :class:`ProgressReporter` receives every status change of a task. The default,
:class:`LogReporter`, writes them to the log; with ``GRAPHQL_URL`` set, the command line
(``worker_framework.cli.make_reporter``) assembles the GraphQL reporter instead.
A reporter must never block a task for long and never raise: progress is informative, the
queues are the source of truth.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loguru import logger

from worker_framework.logging import is_enabled


class TaskStatus(str, enum.Enum):
    """The lifecycle of a task, as the progress API knows it."""

    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True, init=False)
class ProgressUpdate:
    """One status change of one task (``next_retry_at`` is timezone-aware UTC; ``trace_id`` the
    task's W3C trace id, 32 hex digits)."""

    task_id: str
    worker_type: str
    status: TaskStatus
    attempt: int | None = None
    progress: int | None = None
    current_step: str | None = None
    error_message: str | None = None
    next_retry_at: datetime | None = None
    result: dict[str, Any] | None = None
    trace_id: str | None = None

    # Written out rather than generated: the generated __init__ of a frozen dataclass sets each
    # field through object.__setattr__, which made an update cost three times an unfrozen one,
    # and one is built per task on each thread. Storing into the instance dict directly bypasses
    # only the frozen __setattr__ (assignment still raises FrozenInstanceError). Keep the
    # parameters in step with the fields above (a test compares them).
    def __init__(
        self,
        task_id: str,
        worker_type: str,
        status: TaskStatus,
        attempt: int | None = None,
        progress: int | None = None,
        current_step: str | None = None,
        error_message: str | None = None,
        next_retry_at: datetime | None = None,
        result: dict[str, Any] | None = None,
        trace_id: str | None = None,
    ) -> None:
        fields = self.__dict__
        fields["task_id"] = task_id
        fields["worker_type"] = worker_type
        fields["status"] = status
        fields["attempt"] = attempt
        fields["progress"] = progress
        fields["current_step"] = current_step
        fields["error_message"] = error_message
        fields["next_retry_at"] = next_retry_at
        fields["result"] = result
        fields["trace_id"] = trace_id


class ProgressReporter(abc.ABC):
    """Where progress updates go. Implementations must not block for long and must not raise."""

    @abc.abstractmethod
    def report(self, update: ProgressUpdate) -> None:
        """Accept one update (send it now, or queue it for sending)."""

    @abc.abstractmethod
    def close(self, timeout_s: float) -> None:
        """Flush what is pending, giving up after ``timeout_s`` seconds."""

    def wants(self, status: TaskStatus) -> bool:
        """Whether :meth:`report` would keep an update of ``status`` (default: always).

        The framework builds no update a reporter would drop: a reporter that discards some
        (by log level, say) saves the per-task cost of building them by saying so here.
        """
        return True


#: Statuses a person watching the log at INFO wants to see.
_NOTEWORTHY = frozenset({TaskStatus.RETRY_SCHEDULED, TaskStatus.FAILED})


class LogReporter(ProgressReporter):
    """Writes each update to the log; the default when no progress API is configured.

    Retries and failures are logged at INFO. The routine updates of a healthy task (queued,
    processing, completed), one or more per task, go at ``routine_level``: DEBUG by default, as
    Dramatiq does, because at INFO a busy worker would spend more time writing its log than
    running tasks (see bench/throughput.py). ``run-task``, one task watched by a person, passes
    INFO.
    """

    def __init__(self, routine_level: str = "DEBUG") -> None:
        self.routine_level = routine_level

    def wants(self, status: TaskStatus) -> bool:
        """Whether the log keeps lines at the level for ``status`` (routine ones: usually not)."""
        return is_enabled("INFO" if status in _NOTEWORTHY else self.routine_level)

    def report(self, update: ProgressUpdate) -> None:
        """Log the update bound to its task, at the level its status calls for."""
        level = "INFO" if update.status in _NOTEWORTHY else self.routine_level
        if not is_enabled(level):
            return  # the hot path of a busy worker: skip building a line nobody keeps
        details = [update.status.value]
        if update.progress is not None:
            details.append(f"{update.progress}%")
        if update.current_step:
            details.append(f"step={update.current_step}")
        if update.next_retry_at is not None:
            details.append(f"next_retry_at={update.next_retry_at.isoformat()}")
        if update.error_message:
            details.append(f"error={update.error_message}")
        log = logger.bind(
            task_id=update.task_id, worker_type=update.worker_type, attempt=update.attempt
        )
        if update.trace_id is not None:
            log = log.bind(trace_id=update.trace_id)
        log.log(level, "progress " + " ".join(details))

    def close(self, timeout_s: float) -> None:
        """Nothing is buffered."""
