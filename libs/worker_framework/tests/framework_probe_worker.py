"""A worker whose tasks say how to behave: succeed, fail N times, fail for good, sleep, report.

Used by the framework's own tests, in-process (``WorkerThread``) and as a subprocess
(``WorkerProcess("framework_probe_worker:main", "run")``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from loguru import logger
from pydantic import BaseModel
from worker_framework import BaseWorker, TaskContext, WorkerError, run_worker


class ProbeTask(BaseModel):
    """What the probe should do."""

    id: str
    #: Fail transiently while ``attempt <= fail_times``.
    fail_times: int = 0
    fail_permanently: bool = False
    sleep_s: float = 0.0
    #: Sleep only on a first delivery, so a redelivered copy completes quickly.
    sleep_unless_redelivered: bool = False
    progress_steps: int = 0
    #: A file the probe writes its pid into when it starts (tests wait for it).
    started_marker: str | None = None
    secret_in_error: str | None = None
    #: A file the probe appends a line to each time it runs the task (tests count them).
    executions_log: str | None = None
    #: Return a result holding bytes that are not UTF-8: it cannot become JSON.
    unserialisable_result: bool = False
    #: Log this line at INFO through loguru's global logger (not ``ctx.logger``).
    log_message: str | None = None


class ProbeResult(BaseModel):
    """What the probe saw."""

    id: str
    attempt: int
    redelivered: bool
    pid: int
    blob: bytes | None = None


class ProbeWorker(BaseWorker[ProbeTask, ProbeResult]):
    """The probe worker."""

    default_queue = "framework-probe"

    def worker_type(self) -> str:
        """Logs say ``probe``."""
        return "probe"

    def execute_task(self, task: ProbeTask, ctx: TaskContext) -> ProbeResult:
        """Behave as the task says."""
        if task.started_marker:
            Path(task.started_marker).write_text(str(os.getpid()))
        if task.log_message:
            logger.info(task.log_message)
        if task.executions_log:
            with open(task.executions_log, "a") as log:
                log.write(f"{ctx.attempt}\n")
        for step in range(1, task.progress_steps + 1):
            ctx.progress(step * 100 // task.progress_steps, f"step {step}")
        if task.sleep_s and not (task.sleep_unless_redelivered and ctx.redelivered):
            time.sleep(task.sleep_s)
        if task.secret_in_error:
            raise WorkerError(f"could not reach {task.secret_in_error}", permanent=True)
        if task.fail_permanently:
            raise WorkerError("told to fail permanently", permanent=True)
        if ctx.attempt <= task.fail_times:
            raise WorkerError(f"told to fail (attempt {ctx.attempt} of {task.fail_times} failing)")
        return ProbeResult(
            id=task.id,
            attempt=ctx.attempt,
            redelivered=ctx.redelivered,
            pid=os.getpid(),
            blob=b"\xff\xfe" if task.unserialisable_result else None,
        )


def main() -> None:
    """Entry point for subprocess tests."""
    run_worker(ProbeWorker)
