"""Plain records passed between the GraphQL layer, the rules and the storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker_framework.progress import TaskStatus

#: Lifecycle of a task: the framework's enum, the contract workers report in.
Status = TaskStatus


@dataclass(frozen=True)
class ProgressReport:
    """One validated ``reportTaskProgress`` input."""

    task_id: str
    worker_type: str
    status: Status
    progress: int | None = None
    current_step: str | None = None
    attempt: int | None = None
    error_message: str | None = None
    next_retry_at: datetime | None = None
    result: Any = None
    #: The task's W3C trace id (32 hex digits), when the worker sent one.
    trace_id: str | None = None


@dataclass(frozen=True)
class TaskState:
    """The current state of a task (what ``task(id)`` shows, without the history)."""

    id: str
    status: Status
    created_at: datetime
    updated_at: datetime
    queue: str | None = None
    worker_type: str | None = None
    progress: int = 0
    current_step: str | None = None
    attempt: int | None = None
    error_message: str | None = None
    next_retry_at: datetime | None = None
    result: Any = None
    payload: Any = None
    seq: int = 0
    #: False while a submitted task waits in the outbox for RabbitMQ's confirm.
    published: bool = True
    #: The W3C trace id of the task's messages: set at submission, or by the first report
    #: that carries one.
    trace_id: str | None = None


@dataclass(frozen=True)
class ReportResult:
    """What one report of a batch did: the task's state after it, and whether it was stored.

    ``stored`` is False for a stale report (ignored, ``state`` unchanged); ``error`` is set, and
    ``state`` None, when the database refused this report (the others of the batch still apply).
    """

    state: TaskState | None
    stored: bool = False
    error: Exception | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One accepted update of a task, in the order it was applied."""

    status: Status
    recorded_at: datetime
    worker_type: str | None = None
    progress: int | None = None
    current_step: str | None = None
    attempt: int | None = None
    error_message: str | None = None
    next_retry_at: datetime | None = None
    result: Any = None


@dataclass(frozen=True)
class TaskPage:
    """A page of tasks for cursor pagination, newest first."""

    tasks: list[TaskState] = field(default_factory=list)
    has_next_page: bool = False
