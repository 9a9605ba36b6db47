"""Turns a small typed class into a RabbitMQ worker service.

Start with :class:`BaseWorker` and :func:`run_worker`.
"""

from worker_framework.cli import run_worker
from worker_framework.errors import WorkerError
from worker_framework.progress import LogReporter, ProgressReporter, ProgressUpdate, TaskStatus
from worker_framework.settings import WorkerSettings
from worker_framework.worker import BaseWorker, TaskContext

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
