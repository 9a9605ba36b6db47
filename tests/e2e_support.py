"""Shared by the end-to-end tests: a reporter that sees final statuses."""

from __future__ import annotations

import threading
from collections.abc import Callable

from worker_framework import ProgressReporter, ProgressUpdate


class TeeReporter(ProgressReporter):
    """Forwards every update to another reporter and remembers the final statuses seen.

    Lets a test know the worker finished a task without asking the API that may be down.
    """

    def __init__(self, inner: ProgressReporter) -> None:
        self.inner = inner
        self.finished: dict[str, str] = {}
        self._lock = threading.Lock()

    def report(self, update: ProgressUpdate) -> None:
        """Remember final statuses, then forward."""
        if update.status.value in ("COMPLETED", "FAILED"):
            with self._lock:
                self.finished[update.task_id] = update.status.value
        self.inner.report(update)

    def close(self, timeout_s: float) -> None:
        """Close the inner reporter."""
        self.inner.close(timeout_s)

    def finished_all(self, task_ids: list[str]) -> Callable[[], bool]:
        """A predicate: every one of ``task_ids`` has reached a final status."""

        def check() -> bool:
            with self._lock:
                return all(task_id in self.finished for task_id in task_ids)

        return check
