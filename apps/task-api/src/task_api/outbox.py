"""Submission through a transactional outbox: recorded first, published after, never lost.

``submitTask`` commits the task's row (QUEUED, *unpublished*) before it publishes, and marks
the row published once RabbitMQ confirms. Whatever happens in between is recovered:

- a crash, or a broker that is down: the row stays unpublished; a resubmission of the same id
  publishes it, and so does the background sweep (every ``TASK_API_OUTBOX_SWEEP_S``);
- two submissions of one id at once (two replicas on PostgreSQL): the database's own answer
  to the ``INSERT`` says which one created the row, and only that one publishes;
- a resubmission or the sweep finds a row another process is publishing right now: the
  publisher holds a *lease* on the row (``TASK_API_OUTBOX_LEASE_S``); nobody else publishes
  it before the lease ends.

The edge this leaves, by design: a publish that reached RabbitMQ but whose confirm was lost
(the connection died, the process died) is published again, with the same ``message_id``.
That is at-least-once delivery; workers are idempotent by task id.

Every message carries the task's W3C ``traceparent``: the trace id is recorded with the row,
so a republished message (by a resubmission or the sweep) stays in the task's trace.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from worker_framework.tracing import (
    NO_TRACER,
    TraceContext,
    Tracer,
    continue_trace,
    new_trace,
    publish_attributes,
)

from task_api.metrics import TaskApiMetrics, is_database_error
from task_api.publisher import PublishError, PublishRefused, TaskPublisher
from task_api.records import TaskState
from task_api.storage import TaskStore

#: Rows republished per sweep, so a backlog after a long outage is drained in bounded steps.
SWEEP_BATCH = 100

#: Fault injection for tests, and only for them: with this variable set to ``1`` the process
#: kills itself (SIGKILL) after a submission is committed and before it is published, which
#: is the crash the outbox exists for. Read once at start.
CRASH_BEFORE_PUBLISH_VARIABLE = "TASK_API_TEST_CRASH_BEFORE_PUBLISH"
_crash_before_publish = os.environ.get(CRASH_BEFORE_PUBLISH_VARIABLE) == "1"


class SubmissionNotQueued(Exception):
    """The task was recorded but not published yet (``recorded``) or not at all."""

    def __init__(self, message: str, *, recorded: bool) -> None:
        super().__init__(message)
        self.recorded = recorded


@dataclass(frozen=True)
class OutboxTiming:
    """How long a publisher holds a row (``lease_s``) and how often the sweep runs."""

    lease_s: float = 60.0
    sweep_s: float = 10.0


class Outbox:
    """Records submissions and publishes them exactly once from the caller's point of view.

    ``tracer`` gets a span per publish (default: none).
    """

    def __init__(
        self,
        store: TaskStore,
        publisher: TaskPublisher,
        timing: OutboxTiming,
        metrics: TaskApiMetrics,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._timing = timing
        self._metrics = metrics
        self._tracer = tracer
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def submit(
        self, task_id: str, queue: str, body: dict[str, Any], trace: TraceContext | None = None
    ) -> TaskState:
        """Record the task and publish it, or publish an earlier unpublished record of it.

        ``trace`` is the caller's trace context (a new trace when None). Returns the task's
        state. Raises :class:`SubmissionNotQueued` when it could not be published now.
        """
        now = time.time()
        trace = trace or new_trace()
        state, created = self._store.record_submission(
            task_id,
            queue,
            body,
            datetime.fromtimestamp(now, UTC),
            lease_until=self._lease(now),
            trace_id=trace.trace_id,
        )
        if not created:
            if state.published:
                return state
            # Recorded earlier and not published yet (a crash, a broker outage), or being
            # published right now by another request: only the holder of the lease publishes.
            claimed = self._store.claim_unpublished(task_id, now=now, lease_until=self._lease(now))
            if claimed is None:
                return state
            state = claimed
        if _crash_before_publish:
            os.kill(os.getpid(), signal.SIGKILL)
        self._publish(state, trace)
        return state

    def _lease(self, now: float) -> float:
        return now + self._timing.lease_s

    def _publish(self, state: TaskState, caller: TraceContext | None = None) -> None:
        """Publish a row this process holds the lease on, then mark it published.

        The message is in the row's trace: sent by ``caller``'s span when the caller is in that
        trace (a submission), else by a new span of it (the sweep, an older submission).
        """
        assert state.queue is not None
        trace = caller if caller and caller.trace_id == state.trace_id else None
        trace = trace or continue_trace(state.trace_id)
        try:
            with self._tracer.publish(
                trace, f"{state.queue} publish", publish_attributes(state.queue)
            ) as sent:
                self._publisher.publish(state.queue, state.id, state.payload, sent.traceparent)
        except PublishRefused as error:
            self._metrics.submission_publish_failed()
            # RabbitMQ said it did not queue it: nothing to recover later, nothing kept.
            self._store.forget_unpublished(state.id)
            raise SubmissionNotQueued(str(error), recorded=False) from error
        except PublishError as error:
            self._metrics.submission_publish_failed()
            self._store.release_claim(state.id, now=time.time())
            raise SubmissionNotQueued(
                f"{error}: the task is recorded and will be published when RabbitMQ is back"
                f" (task-api retries every {self._timing.sweep_s:g} s), or when it is"
                " submitted again with the same id",
                recorded=True,
            ) from error
        self._metrics.submission_published()
        self._store.mark_published(state.id)

    def sweep(self) -> int:
        """Publish rows left unpublished whose lease has ended; the number published."""
        published = 0
        now = time.time()
        for task_id in self._store.unpublished_due(now=now, limit=SWEEP_BATCH):
            state = self._store.claim_unpublished(task_id, now=now, lease_until=self._lease(now))
            if state is None:
                continue
            try:
                self._publish(state)
            except SubmissionNotQueued as error:
                logger.warning("outbox: task {} not published: {}", task_id, error)
                if error.recorded:
                    break  # the broker is down: the next sweep tries again
                continue
            published += 1
        if published:
            logger.info("outbox: published {} task(s) left unpublished", published)
        return published

    def start(self) -> None:
        """Run :meth:`sweep` in a background thread every ``sweep_s`` seconds."""
        self._sweeper = threading.Thread(target=self._sweep_forever, name="outbox", daemon=True)
        self._sweeper.start()

    def _sweep_forever(self) -> None:
        while not self._stop.wait(self._timing.sweep_s):
            try:
                self.sweep()
            except Exception as error:  # noqa: BLE001 - storage down? the next sweep retries
                logger.exception("outbox sweep failed")
                if is_database_error(error):
                    self._metrics.database_error()

    def stop(self) -> None:
        """Stop the sweep (a sweep in progress finishes its current publish)."""
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=30)
