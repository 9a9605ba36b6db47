"""The task time limit, ``WORKER_TASK_TIMEOUT_S``, applied by the I/O thread.

``WORKER_TASK_TIMEOUT_S`` counts from *delivery*, as the broker's ``consumer_timeout`` does
(30 min by default; past it RabbitMQ closes the channel and requeues every delivery on it).
A task still running at the limit is abandoned and settled as a transient ``TaskTimeout``
failure (retried, or dead-lettered when retries are exhausted). A prefetched delivery still
waiting for a thread at half the limit is requeued: it never started, so that is safe, and
whichever consumer gets it next starts a fresh clock. Keep the limit below
``consumer_timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from worker_framework.broker import Delivery
from worker_framework.inbound import InboundMessage
from worker_framework.outcomes import attempt_of
from worker_framework.settings import WorkerSettings
from worker_framework.settlement import Settlement
from worker_framework.task_runner import TaskRunner, run_for, task_id_from
from worker_framework.task_threads import Job, TaskThreads

if TYPE_CHECKING:
    from loguru import Logger

#: A delivery still waiting for a thread after this fraction of ``WORKER_TASK_TIMEOUT_S`` is
#: requeued, so every task that starts has at least the rest of the limit to run.
WAITING_LIMIT_FRACTION = 0.5


class TimeLimit:
    """Requeues deliveries that waited too long for a thread and settles overrunning tasks.

    ``take_back`` requeues a delivery no thread has started (False if one has).
    """

    def __init__(
        self,
        settings: WorkerSettings,
        threads: TaskThreads,
        settlement: Settlement,
        runner: TaskRunner,
        take_back: Callable[[Job], bool],
        log: Logger,
    ) -> None:
        self.settings = settings
        self._threads = threads
        self._settlement = settlement
        self.runner = runner
        self._take_back = take_back
        self.log = log

    def enforce(self) -> str | None:
        """Apply the limit now; return why the worker must restart, if it must.

        Past ``WORKER_MAX_ABANDONED_THREADS`` abandoned threads still running, the worker stops
        taking tasks: the reason returned says so, for the log and the exit.
        """
        limit = self.settings.worker_task_timeout_s
        now = time.monotonic()
        aged: list[Job] = []
        restart_needed = None
        # Unsettled deliveries are in delivery order: stop at the first one too young to act on.
        for job in self._settlement.unsettled.values():
            if now - job.delivered_at < limit * WAITING_LIMIT_FRACTION:
                break
            aged.append(job)
        for job in aged:
            if self._take_back(job):
                self._settlement.metrics.requeued("time_limit")
                delivery: Delivery = job.payload
                self.log.bind(
                    task_id=task_id_from(delivery.body, delivery.message_id),
                    attempt=attempt_of(delivery),
                ).warning(
                    "waited {:.1f}s for a free thread (WORKER_TASK_TIMEOUT_S={:g}); requeued "
                    "unstarted (is WORKER_PREFETCH too high for WORKER_CONCURRENCY?)",
                    now - job.delivered_at,
                    limit,
                )
            elif now - job.delivered_at > limit and self._threads.abandon(job):
                self._settle_timed_out(job, limit)
                restart_needed = restart_needed or self._too_many_abandoned()
        return restart_needed

    def _too_many_abandoned(self) -> str | None:
        running = self._threads.abandoned_running
        allowed = self.settings.worker_max_abandoned_threads
        if running <= allowed:
            return None
        return (
            f"{running} threads of tasks abandoned at WORKER_TASK_TIMEOUT_S are still running "
            f"(WORKER_MAX_ABANDONED_THREADS={allowed}); the worker stopped taking tasks and "
            "returned its deliveries to the queue: restart it"
        )

    def _settle_timed_out(self, job: Job, limit: float) -> None:
        message: InboundMessage = job.inbound
        outcome = self.runner.failure_outcome(
            "TaskTimeout",
            f"task exceeded WORKER_TASK_TIMEOUT_S={limit:g} (counted from delivery)",
            message.attempt,
            permanent=False,
        )
        self._settlement.settle(
            job,
            run_for(
                message.body,
                outcome,
                attempt=message.attempt,
                message_id=message.message_id,
                trace_id=None if message.trace is None else message.trace.trace_id,
            ),
        )
