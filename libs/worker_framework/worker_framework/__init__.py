"""Turns a small typed class into a RabbitMQ worker service.

Start with :class:`BaseWorker` and :func:`run_worker`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker_framework.errors import WorkerError
from worker_framework.progress import LogReporter, ProgressReporter, ProgressUpdate, TaskStatus
from worker_framework.settings import WorkerSettings
from worker_framework.worker import BaseWorker, TaskContext

if TYPE_CHECKING:
    from worker_framework.cli import run_worker

__all__ = [
    "BaseWorker",
    "LogReporter",
    "ProgressReporter",
    "ProgressUpdate",
    "TaskContext",
    "TaskStatus",
    "WorkerError",
    "WorkerSettings",
    "run_worker",
]


def __getattr__(name: str) -> Any:
    # The command line (and through it the broker adapter, pika and the consumer) is imported
    # only when asked for: a program that uses one part of the framework, such as task-api
    # using its logging, does not pay for the rest at start-up.
    if name == "run_worker":
        from worker_framework.cli import run_worker

        return run_worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
