"""Turns a small typed class into a RabbitMQ worker service.

Start with :class:`BaseWorker` and :func:`run_worker`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker_framework.errors import WorkerError
    from worker_framework.launcher import run_worker
    from worker_framework.progress import (
        LogReporter,
        ProgressReporter,
        ProgressUpdate,
        TaskStatus,
    )
    from worker_framework.settings import WorkerSettings
    from worker_framework.worker import BaseWorker, TaskContext

#: Where each public name lives. Imported on first use (PEP 562): a worker's ``--help`` imports
#: only the launcher, not pydantic and loguru through the worker base and the settings, and a
#: program that uses one part of the framework (task-api its logging) does not pay for the rest.
_HOMES = {
    "BaseWorker": "worker_framework.worker",
    "LogReporter": "worker_framework.progress",
    "ProgressReporter": "worker_framework.progress",
    "ProgressUpdate": "worker_framework.progress",
    "TaskContext": "worker_framework.worker",
    "TaskStatus": "worker_framework.progress",
    "WorkerError": "worker_framework.errors",
    "WorkerSettings": "worker_framework.settings",
    "run_worker": "worker_framework.launcher",
}

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
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
