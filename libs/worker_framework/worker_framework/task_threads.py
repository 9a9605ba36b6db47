"""A fixed set of worker threads that run tasks off the I/O thread.

The thread that owns the RabbitMQ connection must keep servicing it (heartbeats, acks), so
tasks run here. A job moves PENDING -> RUNNING -> FINISHED under one lock, which lets the
consumer take back jobs that have not started (to requeue them at shutdown or when they waited
too long, or drop them after a reconnect) without racing a thread that is about to start them.
A job that overruns its time limit is *abandoned*: Python cannot kill a thread, so the thread
is left to finish on its own (and then exit) and a replacement thread keeps the pool at full
strength.
"""

from __future__ import annotations

import enum
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger


class JobState(enum.Enum):
    """Where a job is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    WITHDRAWN = "withdrawn"


@dataclass(eq=False)
class Job:
    """One delivery on its way through a worker thread (``delivered_at``: ``time.monotonic()``).

    ``payload`` is what must be settled (the delivery), ``inbound`` what the task may read.
    """

    payload: Any
    generation: int
    delivered_at: float
    inbound: Any = None
    #: ``time.monotonic()`` when a thread started and finished the task (0: not yet).
    started_at: float = 0.0
    finished_at: float = 0.0
    state: JobState = JobState.PENDING
    abandoned: bool = False
    settled: bool = False


_STOP = object()


class TaskThreads:
    """``size`` daemon threads calling ``run(job)`` for each submitted job, in order."""

    def __init__(
        self, size: int, run: Callable[[Job], None], log_context: dict[str, Any] | None = None
    ) -> None:
        self._log_context = log_context or {}
        self._size = size
        self._run = run
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._counter = 0
        #: Threads of abandoned jobs that have not finished yet.
        self.abandoned_running = 0

    def start(self) -> None:
        """Start the threads."""
        for _ in range(self._size):
            self._spawn()

    def _spawn(self) -> None:
        self._counter += 1
        thread = threading.Thread(target=self._loop, name=f"task-{self._counter}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def submit(self, job: Job) -> None:
        """Queue ``job``; a free thread starts it."""
        self._queue.put(job)

    def withdraw(self, job: Job) -> bool:
        """Take back a job that has not started; False if a thread already has it."""
        with self._lock:
            if job.state is JobState.PENDING:
                job.state = JobState.WITHDRAWN
                return True
            return False

    def abandon(self, job: Job) -> bool:
        """Give up on a running job and replace its thread; False if it already finished."""
        with self._lock:
            if job.state is not JobState.RUNNING or job.abandoned:
                return False
            job.abandoned = True
            self.abandoned_running += 1
            self._spawn()
            return True

    def stop(self) -> None:
        """Let idle threads exit; busy ones exit after their job (they are daemons)."""
        for _ in range(len(self._threads)):
            self._queue.put(_STOP)

    def _loop(self) -> None:
        # Every line logged from this thread (the worker's own too) names the queue.
        with logger.contextualize(**self._log_context):
            self._serve_jobs()

    def _serve_jobs(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            with self._lock:
                if job.state is not JobState.PENDING:
                    continue
                job.state = JobState.RUNNING
            try:
                self._run(job)
            except Exception:  # noqa: BLE001 - a dead thread would shrink the pool
                logger.exception("unexpected error in task thread")
            with self._lock:
                job.state = JobState.FINISHED
                if job.abandoned:
                    self.abandoned_running -= 1
                    return  # a replacement thread took this one's place
