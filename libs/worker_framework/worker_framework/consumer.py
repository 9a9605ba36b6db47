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
    ``WORKER_TASK_TIMEOUT_S`` counts from delivery: see :mod:`worker_framework.time_limit`.

Unexpected errors
    :meth:`TaskRunner.run` turns every failure of a task into an outcome. Should anything still
    escape it (a framework bug, a progress reporter that raises), the delivery becomes a dead
    letter named after the exception: every delivery is settled, none holds a prefetch slot
    until the broker's ``consumer_timeout``.

Hostile input and total settlement
    Each delivery is normalised on receipt (:mod:`worker_framework.inbound`); nothing after
    reads the raw delivery. :mod:`worker_framework.settlement` stores outcomes and acks, with
    fallbacks down to a minimal dead letter: no error of a message reaches the loop, so none
    can cause a reconnect.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import backoff
from loguru import logger

from worker_framework.broker import BrokerConnection, Delivery, describe_nodes
from worker_framework.errors import BrokerUnavailable, TooManyAbandonedThreads
from worker_framework.inbound import InboundMessage, normalise
from worker_framework.logging import redact
from worker_framework.metrics import NO_METRICS, WorkerMetrics
from worker_framework.outcomes import DeadLettered
from worker_framework.progress import ProgressReporter
from worker_framework.retry_policy import RetryPolicy
from worker_framework.settings import WorkerSettings
from worker_framework.settlement import Settlement
from worker_framework.task_runner import TaskRun, TaskRunner, run_for
from worker_framework.task_threads import Job, JobState, TaskThreads
from worker_framework.time_limit import TimeLimit
from worker_framework.topology import connect, declare_topology
from worker_framework.tracing import NO_TRACER, Tracer
from worker_framework.worker import BaseWorker

#: How long one pass of the I/O loop may block: bounds how fast a stop request or a task time
#: limit is noticed, while deliveries and settlements wake the loop at once (one timer per
#: tick, not one per pass: see ``BrokerConnection.wait_for_events``).
LOOP_TICK_S = 0.2
#: How often a reconnect wait checks for a stop request.
STOP_POLL_S = 0.1
#: Upper bound between reconnection attempts.
MAX_RECONNECT_WAIT_S = 15.0


class Consumer:
    """Consumes ``worker``'s queue until stopped; see the module docstring for the guarantees."""

    def __init__(
        self,
        worker: BaseWorker[Any, Any],
        settings: WorkerSettings,
        reporter: ProgressReporter,
        *,
        connection_name: str | None = None,
        metrics: WorkerMetrics = NO_METRICS,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self.settings = settings
        self._metrics = metrics
        self.queue = worker.queue_name()
        policy = RetryPolicy.from_settings(settings)
        self.runner = TaskRunner(worker, reporter, policy, self.queue, tracer)
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
        self._settlement = Settlement(
            self.queue, settings, self.runner, reporter, self.log, metrics=metrics
        )
        self._time_limit = TimeLimit(
            settings, self._threads, self._settlement, self.runner, self._take_back, self.log
        )
        self._finished: collections.deque[tuple[Job, TaskRun]] = collections.deque()
        self._wake_pending = False
        # A plain flag: set from signal handlers, where taking locks is unsafe.
        self._stop_requested = False
        #: Set when too many abandoned threads still run: :meth:`run` then raises.
        self.restart_needed: str | None = None

    # -- public --------------------------------------------------------------------------------

    @property
    def unsettled(self) -> dict[int, Job]:
        """Deliveries received and not yet acknowledged or returned, by delivery tag."""
        return self._settlement.unsettled

    def tasks_in_flight(self) -> int:
        """Tasks started on a worker thread whose outcome is not settled yet (any thread)."""
        # list() copies the dict in one step under the GIL: the I/O thread may be changing it.
        jobs = list(self._settlement.unsettled.values())
        return sum(1 for job in jobs if job.state in (JobState.RUNNING, JobState.FINISHED))

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
                    self._settlement.connection = None
        finally:
            self.consuming.clear()
            self._threads.stop()

    # -- connection lifecycle ------------------------------------------------------------------

    def _connect_with_backoff(self) -> BrokerConnection | None:
        """Connect, waiting ``backoff.expo`` + full jitter between attempts; None once stopped."""
        delays = backoff.expo(max_value=MAX_RECONNECT_WAIT_S)
        next(delays)  # backoff's generators are primed with one next()
        while not self._stop_requested:
            self._metrics.heartbeat()
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
            self._metrics.heartbeat()  # waiting to reconnect is alive, though not ready
            time.sleep(min(STOP_POLL_S, max(deadline - time.monotonic(), 0)))

    def _serve(self, connection: BrokerConnection) -> None:
        declare_topology(connection, self.queue, self.settings)
        self._settlement.connection = connection
        connection.consume(self.queue, self.settings.worker_prefetch, self._on_delivery)
        self.consuming.set()
        self.log.info(
            "consuming (prefetch {}, concurrency {})",
            self.settings.worker_prefetch,
            self.settings.worker_concurrency,
        )
        while not self._stop_requested:
            connection.wait_for_events(LOOP_TICK_S)
            self._metrics.loop_turned(connection)
            self._settle_finished()
            self._settlement.retry_refused()
            self._enforce_time_limit()
            self._settlement.flush_acks()
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
        self.reconnects += 1
        self._metrics.reconnecting()
        unsettled = self._settlement.unsettled
        withdrawn = sum(1 for job in unsettled.values() if self._threads.withdraw(job))
        still_running = len(unsettled) - withdrawn
        self._settlement.connection_lost()
        self.log.warning(
            "connection lost ({}); the broker redelivers {} queued and {} running tasks",
            error,
            withdrawn,
            still_running,
        )

    def _drain_for_shutdown(self, connection: BrokerConnection) -> None:
        self.consuming.clear()
        connection.stop_consuming()
        requeued = sum(
            1 for job in list(self._settlement.unsettled.values()) if self._take_back(job)
        )
        self._metrics.requeued("shutdown", requeued)
        grace = self.settings.worker_shutdown_grace_s
        self.log.info(
            "stopping (a second SIGTERM/SIGINT exits at once): {} tasks requeued, "
            "waiting up to {}s for {} running",
            requeued,
            grace,
            len(self._settlement.unsettled),
        )
        deadline = time.monotonic() + grace
        while self._settlement.unsettled and time.monotonic() < deadline:
            connection.process_events(min(LOOP_TICK_S, max(deadline - time.monotonic(), 0)))
            self._metrics.heartbeat()
            self._settle_finished()
            self._settlement.retry_refused()
            self._settlement.flush_acks()
        if self._settlement.unsettled:
            self._metrics.requeued("abandoned", len(self._settlement.unsettled))
            self.log.warning(
                "grace period over: {} unfinished tasks return to the queue",
                len(self._settlement.unsettled),
            )

    # -- deliveries and settlement -------------------------------------------------------------

    def _on_delivery(self, delivery: Delivery) -> None:
        # The trust boundary: from here on only the normalised view is read.
        job = Job(
            delivery,
            self._settlement.generation,
            delivered_at=time.monotonic(),
            inbound=normalise(delivery),
        )
        self._settlement.unsettled[delivery.delivery_tag] = job
        self._threads.submit(job)

    def _take_back(self, job: Job) -> bool:
        """Requeue a delivery no thread has started; False if one has."""
        if not self._threads.withdraw(job):
            return False
        self._settlement.return_unstarted(job)
        return True

    def _run_job(self, job: Job) -> None:
        message: InboundMessage = job.inbound
        job.started_at = time.monotonic()
        try:
            run = self.runner.run(
                message.body,
                attempt=message.attempt,
                redelivered=message.redelivered,
                message_id=message.message_id,
                state=message.state,  # the task runner copies it for the task
                trace=message.trace,
            )
        except Exception as error:  # noqa: BLE001 - an unsettled delivery would block the channel
            logger.exception("unexpected error running a task; dead-lettering it")
            outcome = DeadLettered(type(error).__name__, redact(str(error) or type(error).__name__))
            run = run_for(
                message.body,
                outcome,
                attempt=message.attempt,
                message_id=message.message_id,
                trace_id=None if message.trace is None else message.trace.trace_id,
            )
        job.finished_at = time.monotonic()
        self._finished.append((job, run))
        # One wake-up per batch: the flag is cleared by the I/O thread before it drains.
        if not self._wake_pending:
            self._wake_pending = True
            connection = self._settlement.connection
            if connection is not None:
                connection.call_soon_threadsafe(self._settle_finished)

    def _settle_finished(self) -> None:
        self._wake_pending = False
        while self._finished:
            job, run = self._finished.popleft()
            try:
                self._settlement.settle(job, run)
            except BrokerUnavailable:
                raise
            # Settlement is total: a surprise here must not take the I/O thread down.
            except Exception:  # noqa: BLE001
                self._settlement.task_log(run).exception(
                    "unexpected error settling a task; requeueing it"
                )
                self._settlement.give_back(job)
        self._settlement.flush_acks()

    def _enforce_time_limit(self) -> None:
        restart_needed = self._time_limit.enforce()
        if restart_needed is None or self.restart_needed is not None:
            return
        self.restart_needed = restart_needed
        self.log.error("{}", restart_needed)
        # The graceful stop: no more deliveries, unstarted ones requeued, the rest after grace.
        self._stop_requested = True
