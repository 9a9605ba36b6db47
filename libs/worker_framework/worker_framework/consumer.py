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
"""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Any

import backoff
from loguru import logger

from worker_framework.broker import BrokerConnection, Delivery, QueueSpec, describe_nodes
from worker_framework.errors import BrokerUnavailable, PublishFailed
from worker_framework.logging import redact
from worker_framework.outcomes import (
    Completed,
    DeadLettered,
    RetryScheduled,
    attempt_of,
    dead_letter_message,
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
        self._wake_pending = False
        # A plain flag: set from signal handlers, where taking locks is unsafe.
        self._stop_requested = False
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
        if self._unsettled:
            self.log.warning(
                "grace period over: {} unfinished tasks return to the queue", len(self._unsettled)
            )

    # -- deliveries and settlement -------------------------------------------------------------

    def _on_delivery(self, delivery: Delivery) -> None:
        job = Job(delivery, self._generation, delivered_at=time.monotonic())
        self._unsettled[delivery.delivery_tag] = job
        self._threads.submit(job)

    def _take_back(self, job: Job) -> bool:
        """Requeue a delivery no thread has started; False if one has."""
        if not self._threads.withdraw(job):
            return False
        delivery: Delivery = job.payload
        if self._connection is not None:
            return_to_queue(self._connection, self.queue, delivery, self._delivery_limit)
        del self._unsettled[delivery.delivery_tag]
        return True

    def _run_job(self, job: Job) -> None:
        delivery: Delivery = job.payload
        attempt = attempt_of(delivery)
        try:
            run = self.runner.run(
                delivery.body,
                attempt=attempt,
                redelivered=delivery.redelivered,
                message_id=delivery.message_id,
            )
        except Exception as error:  # noqa: BLE001 - an unsettled delivery would block the channel
            logger.exception("unexpected error running a task; dead-lettering it")
            outcome = DeadLettered(type(error).__name__, redact(str(error) or type(error).__name__))
            run = run_for(delivery.body, outcome, attempt=attempt, message_id=delivery.message_id)
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
            self._settle(job, run)

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
        outcome = run.outcome
        try:
            if isinstance(outcome, Completed):
                if delivery.reply_to:
                    try:
                        connection.publish(delivery.reply_to, reply_message(delivery, outcome))
                    except PublishFailed as error:
                        self._task_log(run).warning(
                            "could not deliver the result to reply_to {!r}: {}",
                            delivery.reply_to,
                            error,
                        )
            elif isinstance(outcome, RetryScheduled):
                connection.publish(
                    retry_queue_name(self.queue, outcome.base_delay_ms),
                    retry_message(delivery, outcome),
                )
            elif isinstance(outcome, DeadLettered):
                connection.publish(
                    dead_letter_queue_name(self.queue),
                    dead_letter_message(delivery, outcome, run.attempt),
                )
                self._task_log(run).error(
                    "dead-lettered: {}: {}", outcome.error_type, outcome.error_message
                )
        except PublishFailed as error:
            # A delay or dead-letter queue went missing: recreate the topology and let the
            # broker redeliver the task rather than ack something whose outcome is not stored.
            self._task_log(run).error(
                "could not store the task's outcome ({}); redeclaring queues and requeueing it",
                error,
            )
            declare_topology(connection, self.queue, self.settings)
            return_to_queue(connection, self.queue, delivery, self._delivery_limit)
            self._unsettled.pop(delivery.delivery_tag, None)
            return
        connection.ack(delivery)
        self._unsettled.pop(delivery.delivery_tag, None)
        self._report_final(run)

    def _task_log(self, run: TaskRun) -> Logger:
        # Bound only where a line is written: most settlements log nothing (the hot path).
        return self.log.bind(task_id=run.task_id, attempt=run.attempt)

    def _report_final(self, run: TaskRun) -> None:
        update = self.runner.final_update(run)
        if update is None:
            return  # the message names no task: nothing to report it under
        try:
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

    def _settle_timed_out(self, job: Job, limit: float) -> None:
        delivery: Delivery = job.payload
        attempt = attempt_of(delivery)
        outcome = self.runner.failure_outcome(
            "TaskTimeout",
            f"task exceeded WORKER_TASK_TIMEOUT_S={limit:g} (counted from delivery)",
            attempt,
            permanent=False,
        )
        self._settle(
            job, run_for(delivery.body, outcome, attempt=attempt, message_id=delivery.message_id)
        )
