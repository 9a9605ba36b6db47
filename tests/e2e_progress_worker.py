"""The worker of the end-to-end progress tests: its tasks say how many steps, and how to fail.

A task may also wait at a named gate (``gate``) until the test opens it, so that a test can
look at the task while it is PROCESSING without racing it.
"""

from __future__ import annotations

import threading

from pydantic import BaseModel
from worker_framework import BaseWorker, TaskContext, WorkerError, run_worker

#: Gates by name; a task with ``gate`` set waits (after its first step) until the gate is set.
GATES: dict[str, threading.Event] = {}
#: Long enough for any CI machine, short enough that a broken test ends.
GATE_TIMEOUT_S = 60.0


class E2ETask(BaseModel):
    """What the task should do."""

    id: str
    steps: int = 3
    #: Fail transiently while ``attempt <= fail_times``.
    fail_times: int = 0
    fail_permanently: bool = False
    gate: str | None = None


class E2EResult(BaseModel):
    """What the task reports back."""

    id: str
    attempt: int
    steps: int


class E2EWorker(BaseWorker[E2ETask, E2EResult]):
    """Reports ``steps`` progress steps, then succeeds or fails as told."""

    default_queue = "e2e-progress"

    def worker_type(self) -> str:
        """Reported as ``e2e``."""
        return "e2e"

    def execute_task(self, task: E2ETask, ctx: TaskContext) -> E2EResult:
        """Step through the task, maybe wait at the gate, then finish as told."""
        for step in range(1, task.steps + 1):
            ctx.progress(step * 100 // task.steps, f"step {step}")
            if step == 1 and task.gate is not None:
                GATES.setdefault(task.gate, threading.Event()).wait(GATE_TIMEOUT_S)
        if task.fail_permanently:
            raise WorkerError("told to fail permanently", permanent=True)
        if ctx.attempt <= task.fail_times:
            raise WorkerError(f"told to fail on attempt {ctx.attempt}")
        return E2EResult(id=task.id, attempt=ctx.attempt, steps=task.steps)


def main() -> None:
    """Entry point for running this worker as a process."""
    run_worker(E2EWorker)
