"""The worker the cluster fault tests run as subprocesses: it records every task it completes.

A completed task appends one line ``<task id> <attempt> <pid> <unix time>`` to the file named
by ``CLUSTER_RECORD_FILE`` (one ``write`` on an ``O_APPEND`` descriptor, so lines of concurrent
threads and processes never interleave). The tests read the file to find lost tasks, count
duplicates and time the resumption after a fault.
"""

from __future__ import annotations

import os
import time

from pydantic import BaseModel
from worker_framework import BaseWorker, TaskContext, WorkerError, run_worker

RECORD_FILE_VARIABLE = "CLUSTER_RECORD_FILE"


class ClusterTask(BaseModel):
    """How long to work, and whether to fail first."""

    id: str
    work_ms: int = 0
    #: Fail transiently while ``attempt <= fail_times`` (exercises the delay queues).
    fail_times: int = 0
    #: Fail for good (exercises the dead-letter queue).
    fail_permanently: bool = False


class ClusterResult(BaseModel):
    """The id back."""

    id: str


class ClusterWorker(BaseWorker[ClusterTask, ClusterResult]):
    """Sleeps ``work_ms``, fails as told, records completions."""

    default_queue = "cluster-test"

    def worker_type(self) -> str:
        """Logs say ``cluster``."""
        return "cluster"

    def initialize(self) -> None:
        """Open the record file once per process."""
        path = os.environ[RECORD_FILE_VARIABLE]
        self._record = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def execute_task(self, task: ClusterTask, ctx: TaskContext) -> ClusterResult:
        """Work, fail as told, or record the completion."""
        if task.work_ms:
            time.sleep(task.work_ms / 1000)
        if task.fail_permanently:
            raise WorkerError("told to fail permanently", permanent=True)
        if ctx.attempt <= task.fail_times:
            raise WorkerError(f"told to fail (attempt {ctx.attempt})")
        line = f"{task.id} {ctx.attempt} {os.getpid()} {time.time():.6f}\n"
        os.write(self._record, line.encode())
        return ClusterResult(id=task.id)

    def shutdown(self) -> None:
        """Close the record file."""
        os.close(self._record)


def main() -> None:
    """Entry point of the worker subprocesses."""
    run_worker(ClusterWorker)
