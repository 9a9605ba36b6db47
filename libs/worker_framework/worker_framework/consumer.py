"""The consuming loop: one I/O thread owns the connection, worker threads run the tasks.

Threads and settlement
    The thread calling :meth:`Consumer.run` owns the pika connection and does all AMQP work:
    it receives deliveries, hands them to :class:`TaskThreads`, and settles their outcomes.
    A worker thread that finishes a task appends ``(job, run)`` to a queue and wakes the I/O
    thread through ``call_soon_threadsafe``; the I/O thread publishes the outcome's message
    (reply, delayed retry or dead letter) with publisher confirms and only then acks the
    delivery on the channel it came from. While tasks run, the I/O thread keeps servicing the
    connection, so heartbeats flow however long a task takes.

Connection loss
    Deliveries of a lost connection are requeued by RabbitMQ, so their outcomes must never be
    published or acked later (a tag means nothing on another channel): every job carries the
    connection *generation* it arrived on, and outcomes of an older generation are dropped.
    Jobs not yet started are withdrawn; running ones finish and are dropped; the broker
    redelivers all of them (``ctx.redelivered`` tells the task). The loop reconnects with
    ``backoff`` (trying every node of ``AMQP_URL`` each time) and resumes consuming.

Shutdown
    :meth:`Consumer.request_stop` (called from a SIGTERM/SIGINT handler) makes the loop cancel
    its consumer, requeue the deliveries no thread has started, keep servicing the connection
    while running tasks finish within ``WORKER_SHUTDOWN_GRACE_S``, then close the connection,
    which returns whatever is still unfinished to the queue.

Time limit
    ``WORKER_TASK_TIMEOUT_S`` counts from *delivery*, as the broker's ``consumer_timeout`` does
    (30 min by default; past it RabbitMQ closes the channel and requeues every delivery on it).
    A task still running at the limit is abandoned and settled as a transient ``TaskTimeout``
    failure (retried, or dead-lettered when retries are exhausted). A prefetched delivery still
    waiting for a thread at half the limit is requeued: it never started, so that is safe, and
    whichever consumer gets it next starts a fresh clock. Keep the limit below
    ``consumer_timeout``.

Unexpected errors
    :meth:`TaskRunner.run` turns every failure of a task into an outcome. Should anything still
    escape it (a framework bug, a progress reporter that raises), the delivery becomes a dead
    letter named after the exception: every delivery is settled, none holds a prefetch slot
    until the broker's ``consumer_timeout``.

Hostile input and total settlement
    Each delivery is normalised on receipt (:mod:`worker_framework.inbound`); nothing after
    reads the raw delivery. An outcome whose message cannot be built or encoded becomes a
    minimal dead letter (``OutcomeNotStored``); one the broker refuses is tried again after
    each of :data:`PUBLISH_RETRY_DELAYS_S` while the loop goes on (the task is not run again),
    then dead-lettered minimally; only a refused minimal dead letter returns the delivery to
    the queue. No error of a message reaches the loop, so none can cause a reconnect.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import backoff
from loguru import logger

from worker_framework.broker import (
    BrokerConnection,
    Delivery,
    OutgoingMessage,
    QueueSpec,
    describe_nodes,
)
from worker_framework.errors import BrokerUnavailable, PublishFailed, TooManyAbandonedThreads
from worker_framework.inbound import InboundMessage, normalise
from worker_framework.logging import redact
from worker_framework.outcomes import (
    Completed,
    DeadLettered,
    RetryScheduled,
    attempt_of,
    dead_letter_message,
    minimal_dead_letter,
    reply_message,
    retry_message,
)
from worker_framework.progress import ProgressReporter
from worker_framework.requeue import return_to_queue
from worker_framework.retry_policy import (
    RetryPolicy,
    dead_letter_queue_name,
    retry_queue_name,
    tier_ttl_ms,
)
from worker_framework.settings import WorkerSettings
from worker_framework.task_runner import TaskRun, TaskRunner, run_for, task_id_from
from worker_framework.task_threads import Job, TaskThreads
from worker_framework.worker import BaseWorker

if TYPE_CHECKING:
    from loguru import Logger

#: How long one pass of the I/O loop may block: bounds how fast a stop request or a task time
#: limit is noticed, while deliveries and settlements wake the loop at once.
LOOP_TICK_S = 0.2
#: How often a reconnect wait checks for a stop request.
STOP_POLL_S = 0.1
#: Upper bound between reconnection attempts.
MAX_RECONNECT_WAIT_S = 15.0
#: The last-resort guard of a quorum queue against messages that crash every worker before any
#: outcome is recorded (each crash is a redelivery); such messages go to the dead-letter queue.
QUORUM_DELIVERY_LIMIT = 20
#: A delivery still waiting for a thread after this fraction of ``WORKER_TASK_TIMEOUT_S`` is
#: requeued, so every task that starts has at least the rest of the limit to run.
WAITING_LIMIT_FRACTION = 0.5
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


def worker_topology(queue: str, settings: WorkerSettings) -> list[QueueSpec]:
    """The queues a worker on ``queue`` needs: main, a delay queue per retry tier, dead letters."""
    dlq = dead_letter_queue_name(queue)
    typed: dict[str, Any] = {}
    main_arguments: dict[str, Any] = {}
    dead_lettering: dict[str, Any] = {}
    if settings.worker_queue_type == "quorum":
        typed = {"x-queue-type": "quorum"}
        # Quorum queues dead-letter at most once unless told otherwise; a retry copy on its
        # way back to the main queue must not be dropped.
        dead_lettering = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        main_arguments = {
            **typed,
            **dead_lettering,
            "x-delivery-limit": QUORUM_DELIVERY_LIMIT,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        }
    specs = [QueueSpec(queue, main_arguments), QueueSpec(dlq, typed)]
    for base in RetryPolicy.from_settings(settings).tiers():
        specs.append(
            QueueSpec(
                retry_queue_name(queue, base),
                {
                    **typed,
                    **dead_lettering,
                    "x-message-ttl": tier_ttl_ms(base),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue,
                },
            )
        )
    return specs


def connect(settings: WorkerSettings, connection_name: str | None = None) -> BrokerConnection:
    """One connection attempt over the nodes of ``AMQP_URL``."""
    return BrokerConnection.connect(
        settings.amqp_urls(),
        heartbeat_s=settings.worker_heartbeat_s,
        connection_name=connection_name,
    )


def declare_topology(connection: BrokerConnection, queue: str, settings: WorkerSettings) -> None:
    """Declare every queue of :func:`worker_topology` (idempotent)."""
    for spec in worker_topology(queue, settings):
        connection.declare(spec)


class Consumer:
    """Consumes ``worker``'s queue until stopped; see the module docstring for the guarantees."""

    def __init__(
        self,
        worker: BaseWorker[Any, Any],
        settings: WorkerSettings,
        reporter: ProgressReporter,
        *,
        connection_name: str | None = None,
    ) -> None:
        self.settings = settings
        self.queue = worker.queue_name()
        self.runner = TaskRunner(worker, reporter, RetryPolicy.from_settings(settings), self.queue)
        self.reporter = reporter
        self.connection_name = connection_name or f"{worker.worker_type()}:{self.queue}"
        self.log = logger.bind(queue=self.queue, worker_type=self.runner.worker_type)
        #: Set while consuming; tests wait on it.
        self.consuming = threading.Event()
        #: How many times the connection was re-established after a loss.
        self.reconnects = 0
        self._threads = TaskThreads(
            settings.worker_concurrency,
            self._run_job,
            log_context={"queue": self.queue, "worker_type": self.runner.worker_type},
        )
        self._connection: BrokerConnection | None = None
        self._generation = 0
        self._unsettled: dict[int, Job] = {}
        self._finished: collections.deque[tuple[Job, TaskRun]] = collections.deque()
        #: Outcomes the broker refused, waiting for their next try (see PUBLISH_RETRY_DELAYS_S).
        self._refused: list[_PendingOutcome] = []
        self._wake_pending = False
        # A plain flag: set from signal handlers, where taking locks is unsafe.
        self._stop_requested = False
        #: Set when too many abandoned threads still run: :meth:`run` then raises.
        self.restart_needed: str | None = None
        # Graceful requeues must not spend it (see requeue.py).
        self._delivery_limit = (
            QUORUM_DELIVERY_LIMIT if settings.worker_queue_type == "quorum" else None
        )

    # -- public --------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful stop; safe from signal handlers and other threads."""
        self._stop_requested = True

    def run(self) -> None:
        """Consume until :meth:`request_stop`, reconnecting after connection losses."""
        with logger.contextualize(queue=self.queue, worker_type=self.runner.worker_type):
            self._run()
        if self.restart_needed is not None:
            raise TooManyAbandonedThreads(self.restart_needed)

    def _run(self) -> None:
        self._threads.start()
        try:
            while not self._stop_requested:
                connection = self._connect_with_backoff()
                if connection is None:
                    break
                try:
                    self._serve(connection)
                except BrokerUnavailable as error:
                    self._on_connection_lost(error)
                finally:
                    connection.close()
                    self._connection = None
        finally:
            self.consuming.clear()
            self._threads.stop()

    # -- connection lifecycle ------------------------------------------------------------------

    def _connect_with_backoff(self) -> BrokerConnection | None:
        """Connect, waiting ``backoff.expo`` + full jitter between attempts; None once stopped."""
        delays = backoff.expo(max_value=MAX_RECONNECT_WAIT_S)
        next(delays)  # backoff's generators are primed with one next()
        while not self._stop_requested:
            try:
                connection = connect(self.settings, self.connection_name)
            except BrokerUnavailable as error:
                delay = backoff.full_jitter(next(delays))
                self.log.warning("broker unreachable ({}); retrying in {:.1f}s", error, delay)
                self._sleep(delay)
                continue
            self.log.info("connected to {}", describe_nodes(self.settings.amqp_urls()))
            return connection
        return None

    def _sleep(self, seconds: float) -> None:
        # Short naps rather than Event.wait: a signal handler may request the stop, and
        # Event.set from a handler can deadlock on the lock the interrupted wait holds.
        deadline = time.monotonic() + seconds
        while not self._stop_requested and time.monotonic() < deadline:
            time.sleep(min(STOP_POLL_S, max(deadline - time.monotonic(), 0)))

    def _serve(self, connection: BrokerConnection) -> None:
        declare_topology(connection, self.queue, self.settings)
        self._connection = connection
        connection.consume(self.queue, self.settings.worker_prefetch, self._on_delivery)
        self.consuming.set()
        self.log.info(
            "consuming (prefetch {}, concurrency {})",
            self.settings.worker_prefetch,
            self.settings.worker_concurrency,
        )
        while not self._stop_requested:
            connection.process_events(LOOP_TICK_S)
            self._settle_finished()
            self._retry_refused()
            self._enforce_time_limit()
            if (
                connection.consumer_cancelled_by_broker
                or not connection.consuming_channel_is_open()
            ):
                raise BrokerUnavailable(
                    "the broker cancelled the consumer (queue deleted?) or closed its channel"
                )
        self._drain_for_shutdown(connection)

    def _on_connection_lost(self, error: BrokerUnavailable) -> None:
        self.consuming.clear()
        self._generation += 1
        self.reconnects += 1
        withdrawn = sum(1 for job in self._unsettled.values() if self._threads.withdraw(job))
        still_running = len(self._unsettled) - withdrawn
        self._unsettled.clear()
        self._refused.clear()
        self.log.warning(
            "connection lost ({}); the broker redelivers {} queued and {} running tasks",
            error,
            withdrawn,
            still_running,
        )

    def _drain_for_shutdown(self, connection: BrokerConnection) -> None:
        self.consuming.clear()
        connection.stop_consuming()
        requeued = sum(1 for job in list(self._unsettled.values()) if self._take_back(job))
        grace = self.settings.worker_shutdown_grace_s
        self.log.info(
            "stopping (a second SIGTERM/SIGINT exits at once): {} tasks requeued, "
            "waiting up to {}s for {} running",
            requeued,
            grace,
            len(self._unsettled),
        )
        deadline = time.monotonic() + grace
        while self._unsettled and time.monotonic() < deadline:
            connection.process_events(min(LOOP_TICK_S, max(deadline - time.monotonic(), 0)))
            self._settle_finished()
            self._retry_refused()
        if self._unsettled:
            self.log.warning(
                "grace period over: {} unfinished tasks return to the queue", len(self._unsettled)
            )

    # -- deliveries and settlement -------------------------------------------------------------

    def _on_delivery(self, delivery: Delivery) -> None:
        # The trust boundary: from here on only the normalised view is read.
        job = Job(
            delivery, self._generation, delivered_at=time.monotonic(), inbound=normalise(delivery)
        )
        self._unsettled[delivery.delivery_tag] = job
        self._threads.submit(job)

    def _take_back(self, job: Job) -> bool:
        """Requeue a delivery no thread has started; False if one has."""
        if not self._threads.withdraw(job):
            return False
        delivery: Delivery = job.payload
        if self._connection is not None:
            return_to_queue(
                self._connection, self.queue, delivery, job.inbound, self._delivery_limit
            )
        del self._unsettled[delivery.delivery_tag]
        return True

    def _run_job(self, job: Job) -> None:
        message: InboundMessage = job.inbound
        try:
            run = self.runner.run(
                message.body,
                attempt=message.attempt,
                redelivered=message.redelivered,
                message_id=message.message_id,
                state=dict(message.state),
            )
        except Exception as error:  # noqa: BLE001 - an unsettled delivery would block the channel
            logger.exception("unexpected error running a task; dead-lettering it")
            outcome = DeadLettered(type(error).__name__, redact(str(error) or type(error).__name__))
            run = run_for(
                message.body, outcome, attempt=message.attempt, message_id=message.message_id
            )
        self._finished.append((job, run))
        # One wake-up per batch: the flag is cleared by the I/O thread before it drains.
        if not self._wake_pending:
            self._wake_pending = True
            connection = self._connection
            if connection is not None:
                connection.call_soon_threadsafe(self._settle_finished)

    def _settle_finished(self) -> None:
        self._wake_pending = False
        while self._finished:
            job, run = self._finished.popleft()
            try:
                self._settle(job, run)
            except BrokerUnavailable:
                raise
            # Settlement is total: a surprise here must not take the I/O thread down.
            except Exception:  # noqa: BLE001
                self._task_log(run).exception("unexpected error settling a task; requeueing it")
                self._give_back(job)

    def _settle(self, job: Job, run: TaskRun) -> None:
        delivery: Delivery = job.payload
        connection = self._connection
        if job.settled:
            return  # already settled as timed out; this late result is ignored
        job.settled = True
        if (
            connection is None
            or job.generation != self._generation
            or not connection.owns(delivery)
        ):
            self._task_log(run).warning(
                "task finished after its delivery's connection was lost; the broker redelivers it"
            )
            return
        if isinstance(run.outcome, Completed) and not job.inbound.reply_to:
            self._acknowledge(job, run)  # the hot path: nothing to publish
            return
        try:
            pending = self._outcome_message(job, run)
        except Exception as error:  # noqa: BLE001 - whatever the outcome held, settle the delivery
            self._task_log(run).exception("could not build the outcome's message")
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
        connection = self._connection
        job, run = pending.job, pending.run
        if connection is None or job.generation != self._generation:
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
                    self._task_log(run).error(
                        "could not publish the {} to {!r} ({}); dead-lettering it with minimal "
                        "headers",
                        pending.kind,
                        pending.routing_key,
                        redact(str(error)),
                    )
                    self._publish_outcome(self._minimal(job, run, error, "could not publish it"))
                    return
                else:
                    self._task_log(run).error(
                        "could not publish even a minimal dead letter ({}); requeueing it",
                        redact(str(error)),
                    )
                    self._give_back(job)
                    return
        self._acknowledge(job, run)

    def _acknowledge(self, job: Job, run: TaskRun) -> None:
        """The outcome is stored: ack the delivery and report the final status."""
        if self._connection is not None:
            self._connection.ack(job.payload)
        self._unsettled.pop(job.payload.delivery_tag, None)
        if isinstance(run.outcome, DeadLettered):
            self._task_log(run).error(
                "dead-lettered: {}: {}", run.outcome.error_type, run.outcome.error_message
            )
        self._report_final(run)

    def _reply_failed(self, pending: _PendingOutcome, error: Exception) -> None:
        self._task_log(pending.run).warning(
            "could not deliver the result to reply_to {!r}: {}",
            pending.routing_key,
            redact(str(error)),
        )

    def _on_refused(self, pending: _PendingOutcome, error: PublishFailed) -> None:
        """The broker refused an outcome: try again later, bounded, then the next fallback."""
        log = self._task_log(pending.run)
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
            if self._connection is not None:
                # A delay or dead-letter queue may have been deleted: recreate the topology.
                try:
                    declare_topology(self._connection, self.queue, self.settings)
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
        self._give_back(pending.job)

    def _retry_refused(self) -> None:
        if not self._refused:
            return
        now = time.monotonic()
        due = [pending for pending in self._refused if pending.due <= now]
        if due:
            self._refused = [pending for pending in self._refused if pending.due > now]
            for pending in due:
                self._publish_outcome(pending)

    def _give_back(self, job: Job) -> None:
        """Return a delivery whose outcome could not be stored to its queue (nothing is lost)."""
        delivery: Delivery = job.payload
        connection = self._connection
        if self._unsettled.pop(delivery.delivery_tag, None) is None:
            return  # already acknowledged (or its connection is gone): nothing to give back
        if connection is not None and job.generation == self._generation:
            return_to_queue(connection, self.queue, delivery, job.inbound, self._delivery_limit)

    def _task_log(self, run: TaskRun) -> Logger:
        # Bound only where a line is written: most settlements log nothing (the hot path).
        return self.log.bind(task_id=run.task_id, attempt=run.attempt)

    def _report_final(self, run: TaskRun) -> None:
        try:
            update = self.runner.final_update(run)
            if update is None:
                return  # the message names no task: nothing to report it under
            self.reporter.report(update)
        # Reporters must not raise; one that does anyway must not stop the I/O loop.
        except Exception:  # noqa: BLE001
            self._task_log(run).exception("the progress reporter raised; update dropped")

    def _enforce_time_limit(self) -> None:
        """Apply ``WORKER_TASK_TIMEOUT_S``, counted from delivery (see the module docstring)."""
        limit = self.settings.worker_task_timeout_s
        now = time.monotonic()
        aged: list[Job] = []
        # _unsettled is in delivery order: stop at the first delivery too young to act on.
        for job in self._unsettled.values():
            if now - job.delivered_at < limit * WAITING_LIMIT_FRACTION:
                break
            aged.append(job)
        for job in aged:
            if self._take_back(job):
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
                self._check_abandoned_threads()

    def _check_abandoned_threads(self) -> None:
        """Past ``WORKER_MAX_ABANDONED_THREADS`` still running, stop for a restart."""
        running = self._threads.abandoned_running
        allowed = self.settings.worker_max_abandoned_threads
        if running <= allowed or self.restart_needed is not None:
            return
        self.restart_needed = (
            f"{running} threads of tasks abandoned at WORKER_TASK_TIMEOUT_S are still running "
            f"(WORKER_MAX_ABANDONED_THREADS={allowed}); the worker stopped taking tasks and "
            "returned its deliveries to the queue: restart it"
        )
        self.log.error("{}", self.restart_needed)
        # The graceful stop: no more deliveries, unstarted ones requeued, the rest after grace.
        self._stop_requested = True

    def _settle_timed_out(self, job: Job, limit: float) -> None:
        message: InboundMessage = job.inbound
        outcome = self.runner.failure_outcome(
            "TaskTimeout",
            f"task exceeded WORKER_TASK_TIMEOUT_S={limit:g} (counted from delivery)",
            message.attempt,
            permanent=False,
        )
        self._settle(
            job,
            run_for(message.body, outcome, attempt=message.attempt, message_id=message.message_id),
        )
