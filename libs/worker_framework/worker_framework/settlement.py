"""Settlement: store a finished task's outcome with the broker, then acknowledge its delivery.

Runs on the I/O thread only (it uses the connection). The outcome's message (a reply, a
delayed retry copy or a dead letter) is published with publisher confirms; only once the
broker has it is the delivery acknowledged, on the channel it came from, and the final status
reported. A crash before the ack means redelivery, never loss.

Acks are queued as outcomes are stored and sent by :meth:`Settlement.flush_acks`, which the
consumer calls at the end of each pass over finished tasks: the deliveries stored in one pass go
out in as few frames as their order allows (one ``multiple`` ack for those older than every
delivery still unsettled), so a busy worker writes one frame, not one per message.

Fallbacks, so that every delivery is settled and no error of a message reaches the loop: an
outcome whose message cannot be built or encoded becomes a minimal dead letter
(``OutcomeNotStored``); one the broker refuses is tried again after each of
:data:`PUBLISH_RETRY_DELAYS_S` while the loop goes on (the task is not run again), then
dead-lettered minimally; only a refused minimal dead letter returns the delivery to the queue.
Outcomes of a connection that was lost (an older *generation*) are dropped: the broker
redelivers those deliveries.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker_framework.broker import BrokerConnection, Delivery, OutgoingMessage
from worker_framework.errors import BrokerUnavailable, PublishFailed
from worker_framework.inbound import InboundMessage
from worker_framework.logging import redact
from worker_framework.metrics import NO_METRICS, WorkerMetrics
from worker_framework.outcomes import (
    Completed,
    DeadLettered,
    RetryScheduled,
    dead_letter_message,
    minimal_dead_letter,
    reply_message,
    retry_message,
)
from worker_framework.progress import ProgressReporter
from worker_framework.requeue import return_to_queue
from worker_framework.retry_policy import dead_letter_queue_name, retry_queue_name
from worker_framework.settings import WorkerSettings
from worker_framework.task_runner import TaskRun, TaskRunner
from worker_framework.task_threads import Job
from worker_framework.topology import declare_topology, delivery_limit

if TYPE_CHECKING:
    from loguru import Logger

#: Waits before publishing an outcome the broker refused (nack, unroutable) again: about 8 s in
#: all, long enough for a full queue to drain a little or a deleted one to be redeclared, short
#: against the heartbeat; meanwhile the loop serves other deliveries. Then the next fallback.
PUBLISH_RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass
class _PendingOutcome:
    """An outcome's message on its way to the broker (``kind`` says which fallback is next)."""

    job: Job
    run: TaskRun
    kind: str  # "reply", "retry", "dead-letter" or "minimal"
    routing_key: str
    message: OutgoingMessage | None
    refusals: int = 0
    due: float = 0.0


class Settlement:
    """Settles the deliveries of one queue on the current connection (see the module docstring).

    ``unsettled`` holds every delivery received and not yet acknowledged or returned, by
    delivery tag, in delivery order; the consumer adds to it, settlement removes from it.
    """

    def __init__(
        self,
        queue: str,
        settings: WorkerSettings,
        runner: TaskRunner,
        reporter: ProgressReporter,
        log: Logger,
        *,
        metrics: WorkerMetrics = NO_METRICS,
    ) -> None:
        self.queue = queue
        self.metrics = metrics
        self.settings = settings
        self.runner = runner
        self.reporter = reporter
        self.log = log
        # Graceful returns must not spend a quorum queue's delivery limit (see requeue.py).
        self.delivery_limit = delivery_limit(settings)
        self.connection: BrokerConnection | None = None
        #: Counts connection losses: outcomes of jobs from an older generation are dropped.
        self.generation = 0
        self.unsettled: dict[int, Job] = {}
        #: Outcomes the broker refused, waiting for their next try (see PUBLISH_RETRY_DELAYS_S).
        self._refused: list[_PendingOutcome] = []
        #: Stored outcomes whose deliveries wait for :meth:`flush_acks`.
        self._stored: list[tuple[Job, TaskRun]] = []

    def connection_lost(self) -> None:
        """Forget the lost connection's deliveries: the broker redelivers all of them."""
        self.connection = None
        self.generation += 1
        self.unsettled.clear()
        self._refused.clear()
        self._stored.clear()

    def settle(self, job: Job, run: TaskRun) -> None:
        """Store ``run``'s outcome, then ack ``job``'s delivery; a later call for it is ignored."""
        delivery: Delivery = job.payload
        connection = self.connection
        if job.settled:
            return  # already settled as timed out; this late result is ignored
        job.settled = True
        if connection is None or job.generation != self.generation or not connection.owns(delivery):
            self.task_log(run).warning(
                "task finished after its delivery's connection was lost; the broker redelivers it"
            )
            return
        if isinstance(run.outcome, Completed) and not job.inbound.reply_to:
            self._acknowledge(job, run)  # the hot path: nothing to publish
            return
        try:
            pending = self._outcome_message(job, run)
        except Exception as error:  # noqa: BLE001 - whatever the outcome held, settle the delivery
            self.task_log(run).exception("could not build the outcome's message")
            pending = self._minimal(job, run, error, "could not build the outcome's message")
        self._publish_outcome(pending)

    def _outcome_message(self, job: Job, run: TaskRun) -> _PendingOutcome:
        message: InboundMessage = job.inbound
        outcome = run.outcome
        if isinstance(outcome, Completed):
            if not message.reply_to:
                return _PendingOutcome(job, run, "reply", "", None)
            return _PendingOutcome(
                job, run, "reply", message.reply_to, reply_message(message, outcome)
            )
        if isinstance(outcome, RetryScheduled):
            return _PendingOutcome(
                job,
                run,
                "retry",
                retry_queue_name(self.queue, outcome.base_delay_ms),
                retry_message(message, outcome),
            )
        return _PendingOutcome(
            job,
            run,
            "dead-letter",
            dead_letter_queue_name(self.queue),
            dead_letter_message(message, outcome, run.attempt),
        )

    def _minimal(self, job: Job, run: TaskRun, error: Exception, why: str) -> _PendingOutcome:
        """The last-resort dead letter, reporting the task FAILED with ``why``."""
        original = run.outcome
        detail = f"{why}: {type(error).__name__}: {redact(str(error))}"
        if isinstance(original, RetryScheduled | DeadLettered):
            detail += f" (outcome was {original.error_type}: {original.error_message})"
        outcome = DeadLettered("OutcomeNotStored", detail)
        message: InboundMessage = job.inbound
        return _PendingOutcome(
            job,
            dataclasses.replace(run, outcome=outcome),
            "minimal",
            dead_letter_queue_name(self.queue),
            minimal_dead_letter(message, outcome.error_type, outcome.error_message),
        )

    def _publish_outcome(self, pending: _PendingOutcome) -> None:
        """Publish ``pending``'s message, then ack; on failure take the next fallback.

        reply: a failed reply is logged and the task still counts as done. retry / dead-letter:
        refused by the broker -> tried again after each of PUBLISH_RETRY_DELAYS_S, then a
        minimal dead letter; unencodable (or any other error) -> a minimal dead letter at once.
        minimal: refused or failing too -> the delivery returns to the queue.
        """
        connection = self.connection
        job, run = pending.job, pending.run
        if connection is None or job.generation != self.generation:
            return  # the connection was lost meanwhile: the broker redelivers it
        if pending.message is not None:
            try:
                connection.publish(pending.routing_key, pending.message)
            except BrokerUnavailable:
                raise
            except PublishFailed as error:
                if pending.kind != "reply":
                    self._on_refused(pending, error)
                    return
                self._reply_failed(pending, error)
            except Exception as error:  # noqa: BLE001 - unencodable, or a surprise: next fallback
                if pending.kind == "reply":
                    self._reply_failed(pending, error)
                elif pending.kind != "minimal":
                    self.task_log(run).error(
                        "could not publish the {} to {!r} ({}); dead-lettering it with minimal "
                        "headers",
                        pending.kind,
                        pending.routing_key,
                        redact(str(error)),
                    )
                    self._publish_outcome(self._minimal(job, run, error, "could not publish it"))
                    return
                else:
                    self.task_log(run).error(
                        "could not publish even a minimal dead letter ({}); requeueing it",
                        redact(str(error)),
                    )
                    self.give_back(job)
                    return
        self._acknowledge(job, run)

    def _acknowledge(self, job: Job, run: TaskRun) -> None:
        """The outcome is stored: queue the delivery's ack for :meth:`flush_acks`."""
        self._stored.append((job, run))

    def flush_acks(self) -> None:
        """Acknowledge the deliveries whose outcomes are stored, then report their final status.

        A delivery returned to its queue meanwhile (no longer unsettled) is not acknowledged.
        """
        if not self._stored:
            return
        stored, self._stored = self._stored, []
        acknowledged = [
            (job, run)
            for job, run in stored
            if self.unsettled.pop(job.payload.delivery_tag, None) is not None
        ]
        connection = self.connection
        if connection is not None:
            deliveries = [job.payload for job, _ in acknowledged]
            for delivery, multiple in ack_frames(deliveries, self.unsettled):
                connection.ack(delivery, multiple=multiple)
        for job, run in acknowledged:
            self.metrics.task_settled(job, run.outcome)
            if isinstance(run.outcome, DeadLettered):
                self.task_log(run).error(
                    "dead-lettered: {}: {}", run.outcome.error_type, run.outcome.error_message
                )
            self._report_final(run)

    def _reply_failed(self, pending: _PendingOutcome, error: Exception) -> None:
        self.task_log(pending.run).warning(
            "could not deliver the result to reply_to {!r}: {}",
            pending.routing_key,
            redact(str(error)),
        )

    def _on_refused(self, pending: _PendingOutcome, error: PublishFailed) -> None:
        """The broker refused an outcome: try again later, bounded, then the next fallback."""
        log = self.task_log(pending.run)
        if pending.refusals < len(PUBLISH_RETRY_DELAYS_S):
            delay = PUBLISH_RETRY_DELAYS_S[pending.refusals]
            pending.refusals += 1
            pending.due = time.monotonic() + delay
            log.warning(
                "could not store the task's outcome ({}); redeclaring queues, retry {} of {} "
                "in {:.2f}s",
                error,
                pending.refusals,
                len(PUBLISH_RETRY_DELAYS_S),
                delay,
            )
            if self.connection is not None:
                # A delay or dead-letter queue may have been deleted: recreate the topology.
                try:
                    declare_topology(self.connection, self.queue, self.settings)
                except BrokerUnavailable:
                    raise
                except Exception:  # - the retry below is what matters
                    log.exception("could not redeclare the queues")
            self._refused.append(pending)
            return
        if pending.kind != "minimal":
            log.error(
                "the broker refused the {} {} times; dead-lettering with minimal headers",
                pending.kind,
                pending.refusals,
            )
            why = f"the broker refused the {pending.kind} copy {pending.refusals} times"
            self._publish_outcome(self._minimal(pending.job, pending.run, error, why))
            return
        log.error("the broker refuses even a minimal dead letter ({}); requeueing it", error)
        self.give_back(pending.job)

    def retry_refused(self) -> None:
        """Publish again the refused outcomes whose wait is over (acks queued, not flushed)."""
        if not self._refused:
            return
        now = time.monotonic()
        due = [pending for pending in self._refused if pending.due <= now]
        if due:
            self._refused = [pending for pending in self._refused if pending.due > now]
            for pending in due:
                self._publish_outcome(pending)

    def give_back(self, job: Job) -> None:
        """Return a delivery whose outcome could not be stored to its queue (nothing is lost)."""
        delivery: Delivery = job.payload
        connection = self.connection
        if self.unsettled.pop(delivery.delivery_tag, None) is None:
            return  # already acknowledged (or its connection is gone): nothing to give back
        if connection is not None and job.generation == self.generation:
            return_to_queue(connection, self.queue, delivery, job.inbound, self.delivery_limit)
            self.metrics.requeued("outcome_not_stored")

    def return_unstarted(self, job: Job) -> None:
        """Return a delivery no thread has started (shutdown, a long wait for a thread)."""
        delivery: Delivery = job.payload
        if self.connection is not None:
            return_to_queue(self.connection, self.queue, delivery, job.inbound, self.delivery_limit)
        del self.unsettled[delivery.delivery_tag]

    def task_log(self, run: TaskRun) -> Logger:
        """The log bound to ``run``'s task id and attempt."""
        # Bound only where a line is written: most settlements log nothing (the hot path).
        return self.log.bind(task_id=run.task_id, attempt=run.attempt, trace_id=run.trace_id)

    def _report_final(self, run: TaskRun) -> None:
        try:
            status = self.runner.final_status(run)
            if status is None or not self.reporter.wants(status):
                return  # nothing to report it under, or the reporter would drop it: build none
            update = self.runner.final_update(run)
            if update is None:
                return  # the message names no task: nothing to report it under
            self.reporter.report(update)
        # Reporters must not raise; one that does anyway must not stop the I/O loop.
        except Exception:  # noqa: BLE001
            self.task_log(run).exception("the progress reporter raised; update dropped")


def ack_frames(stored: list[Delivery], unsettled: dict[int, Job]) -> list[tuple[Delivery, bool]]:
    """The ack frames that acknowledge ``stored`` and nothing else: ``(delivery, multiple)``.

    ``unsettled`` (in delivery order, ``stored`` already removed) holds every delivery of the
    channel not yet acknowledged or returned, bar those pika has not handed over yet, which
    come later. So one ``multiple`` ack up to the newest stored delivery older than the oldest
    unsettled one acknowledges exactly the stored deliveries up to it; newer ones go one by one.
    Deliveries of more than one channel (tags are per channel) all go one by one.
    """
    channel = stored[0].channel if stored else None
    if len(stored) < 2 or any(d.channel is not channel for d in stored):
        return [(delivery, False) for delivery in stored]
    below = next(
        (job.payload.delivery_tag for job in unsettled.values() if job.payload.channel is channel),
        None,
    )
    covered = [d for d in stored if below is None or d.delivery_tag < below]
    frames = [(d, False) for d in stored if below is not None and d.delivery_tag > below]
    if len(covered) == 1:
        frames.insert(0, (covered[0], False))
    elif covered:
        frames.insert(0, (max(covered, key=lambda d: d.delivery_tag), True))
    return frames
