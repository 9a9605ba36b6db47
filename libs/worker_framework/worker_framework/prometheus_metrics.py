"""The recorder that counts: worker metrics in a ``prometheus_client`` registry of their own.

Imported only when ``WORKER_METRICS_PORT`` is set. Per-task figures (tasks by outcome, task
duration, queue wait, the last finish) sit on the per-message path, so they are kept in plain
numbers that only the I/O thread writes, and turned into Prometheus families when scraped
(:class:`_TaskCollector`): no lock and no label lookup per message. Rare events (retries, dead
letters, reconnects, requeues) use ordinary ``prometheus_client`` counters, their labelled
children bound once. Values read from elsewhere (tasks in flight, the progress reporter's
counts) are read at scrape time.
"""

from __future__ import annotations

import bisect
import platform
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from worker_framework.metrics import (
    DURATION_BUCKETS_S,
    FRAMEWORK_VERSION,
    OUTCOMES,
    QUEUE_DEPTH_INTERVAL_S,
    REQUEUE_REASONS,
    CountedProgress,
    WorkerMetrics,
    capped,
)
from worker_framework.outcomes import Completed, DeadLettered, Outcome, RetryScheduled

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from worker_framework.broker import BrokerConnection
    from worker_framework.progress import ProgressReporter
    from worker_framework.task_threads import Job

#: The ``le`` label of each bucket, ``+Inf`` last.
_BUCKET_LABELS = [repr(float(bound)) for bound in DURATION_BUCKETS_S] + ["+Inf"]


class _Histogram:
    """Observations in :data:`DURATION_BUCKETS_S`, written by one thread only."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS_S) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le = "less or equal").
        self.counts[bisect.bisect_left(DURATION_BUCKETS_S, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        buckets: list[tuple[str, float]] = []
        for label, count in zip(_BUCKET_LABELS, list(self.counts), strict=True):
            running += count
            buckets.append((label, running))
        return buckets


class PrometheusWorkerMetrics(WorkerMetrics):
    """Counts one worker's tasks into :attr:`registry` (see the module docstring).

    Parameters:
        queue: the queue consumed, the ``queue`` label.
        worker_type: the worker's type, the ``worker_type`` label.
        app_version: the ``version`` label of ``worker_build_info``.
    """

    def __init__(self, queue: str, worker_type: str, *, app_version: str = "unknown") -> None:
        self.registry = CollectorRegistry()
        self.queue = queue
        self.worker_type = worker_type
        #: ``time.monotonic()`` of the I/O loop's last turn (liveness).
        self.last_turn = time.monotonic()
        self._outcomes = {Completed: 0, RetryScheduled: 1, DeadLettered: 2}
        self._settled = [0] * len(OUTCOMES)
        self._durations = [_Histogram() for _ in OUTCOMES]
        self._queue_wait = _Histogram()
        # Counted from the start, so "nothing finished for N minutes" holds for a new worker too.
        self._last_finished = time.time()
        self._next_depth_sample = 0.0
        self._in_flight: Callable[[], int] = lambda: 0
        # Any reporter; only one that counts (CountedProgress) has figures to show.
        self._progress: object = None
        self._define(app_version)
        self.registry.register(_TaskCollector(self))

    def _define(self, app_version: str) -> None:
        labels = ["queue", "worker_type"]
        values = (self.queue, self.worker_type)
        registry = self.registry
        self._retries = Counter(
            "worker_retries",
            "Retries scheduled, by the delay tier's base delay in ms.",
            [*labels, "delay_ms"],
            registry=registry,
        )
        self._retry_children: dict[int, Counter] = {}
        self._dead_letters = Counter(
            "worker_dead_letters",
            "Tasks dead-lettered, by error type.",
            [*labels, "error_type"],
            registry=registry,
        )
        self._dead_letter_children: dict[str, Counter] = {}
        self._error_types: set[str] = set()
        self._reconnects = Counter(
            "worker_reconnects",
            "Connection losses followed by a reconnect.",
            labels,
            registry=registry,
        ).labels(*values)
        requeued = Counter(
            "worker_deliveries_requeued",
            "Deliveries returned to the queue, by reason.",
            [*labels, "reason"],
            registry=registry,
        )
        self._requeued = {reason: requeued.labels(*values, reason) for reason in REQUEUE_REASONS}
        self._ready_messages = Gauge(
            "worker_queue_messages_ready",
            "Ready messages in the main queue, sampled every 15 s.",
            ["queue"],
            registry=registry,
        ).labels(self.queue)
        Gauge(
            "worker_build_info",
            "Always 1; the labels say what runs.",
            ["worker_type", "version", "framework_version", "python"],
            registry=registry,
        ).labels(self.worker_type, app_version, FRAMEWORK_VERSION, platform.python_version()).set(1)

    # -- wiring and serving --------------------------------------------------------------------

    def watch(self, in_flight: Callable[[], int], progress: ProgressReporter) -> None:
        """Read ``in_flight()`` and ``progress``'s counts at every scrape."""
        self._in_flight = in_flight
        self._progress = progress

    def render(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def seconds_since_turn(self) -> float:
        """How long ago the I/O loop last turned."""
        return time.monotonic() - self.last_turn

    # -- the recorder (I/O thread) -------------------------------------------------------------

    def loop_turned(self, connection: BrokerConnection) -> None:
        """Stamp liveness; sample the queue depth every :data:`QUEUE_DEPTH_INTERVAL_S`."""
        now = time.monotonic()
        self.last_turn = now
        if now >= self._next_depth_sample:
            self._next_depth_sample = now + QUEUE_DEPTH_INTERVAL_S
            self._sample_depth(connection)

    def _sample_depth(self, connection: BrokerConnection) -> None:
        try:
            count = connection.message_count(self.queue)
        # A lost connection shows at the loop's next turn; a sample is not worth more.
        except Exception as error:  # noqa: BLE001
            logger.debug("could not sample the depth of {!r}: {}", self.queue, error)
            return
        if count is not None:
            self._ready_messages.set(count)

    def heartbeat(self) -> None:
        """Stamp liveness."""
        self.last_turn = time.monotonic()

    def task_settled(self, job: Job, outcome: Outcome) -> None:
        """Count the outcome; observe the duration and queue wait of a task that started."""
        index = self._outcomes[type(outcome)]
        self._settled[index] += 1
        self._last_finished = time.time()
        started = job.started_at
        if started:
            finished = job.finished_at or time.monotonic()  # a timed-out task is still running
            self._durations[index].observe(finished - started)
            self._queue_wait.observe(started - job.delivered_at)
        if index:  # the common case, completed, is done
            if isinstance(outcome, RetryScheduled):
                self._retry(outcome.base_delay_ms)
            elif isinstance(outcome, DeadLettered):
                self._dead_letter(outcome.error_type)

    def _retry(self, delay_ms: int) -> None:
        child = self._retry_children.get(delay_ms)
        if child is None:
            child = self._retries.labels(self.queue, self.worker_type, str(delay_ms))
            self._retry_children[delay_ms] = child
        child.inc()

    def _dead_letter(self, error_type: str) -> None:
        label = capped(self._error_types, error_type)
        child = self._dead_letter_children.get(label)
        if child is None:
            child = self._dead_letters.labels(self.queue, self.worker_type, label)
            self._dead_letter_children[label] = child
        child.inc()

    def requeued(self, reason: str, count: int = 1) -> None:
        """Count ``count`` deliveries returned for ``reason``."""
        if count:
            self._requeued[reason].inc(count)

    def reconnecting(self) -> None:
        """Count a reconnect."""
        self._reconnects.inc()

    # -- read at scrape time -------------------------------------------------------------------

    def families(self) -> Iterator[Metric]:
        """The per-task families, from the numbers the I/O thread keeps."""
        values = [self.queue, self.worker_type]
        labels = ["queue", "worker_type"]
        tasks = CounterMetricFamily(
            "worker_tasks",
            "Tasks settled (outcome stored, delivery acked), by outcome.",
            labels=[*labels, "outcome"],
        )
        durations = HistogramMetricFamily(
            "worker_task_duration_seconds",
            "Time from a task's start on a worker thread to its end, by outcome.",
            labels=[*labels, "outcome"],
        )
        for outcome, settled, histogram in zip(
            OUTCOMES, list(self._settled), self._durations, strict=True
        ):
            tasks.add_metric([*values, outcome], settled)
            durations.add_metric([*values, outcome], histogram.cumulative(), histogram.total)
        yield tasks
        yield durations
        wait = HistogramMetricFamily(
            "worker_queue_wait_seconds",
            "Time from a delivery's receipt by the worker to its task's start.",
            labels=labels,
        )
        wait.add_metric(values, self._queue_wait.cumulative(), self._queue_wait.total)
        yield wait
        yield _gauge(
            "worker_tasks_in_flight",
            "Tasks started and not yet settled.",
            labels,
            values,
            self._in_flight(),
        )
        yield _gauge(
            "worker_last_task_finished_timestamp_seconds",
            "Unix time of the last task settled (the worker's start before the first).",
            labels,
            values,
            self._last_finished,
        )
        yield from self._progress_families()

    def _progress_families(self) -> Iterator[Metric]:
        pending = sent = dropped = 0
        if isinstance(self._progress, CountedProgress):
            pending, sent, dropped = self._progress.counts()
        labels, values = ["worker_type"], [self.worker_type]
        yield _gauge(
            "worker_progress_updates_pending",
            "Progress updates waiting for the progress API.",
            labels,
            values,
            pending,
        )
        for name, text, value in (
            ("worker_progress_updates_sent", "Progress updates the API accepted.", sent),
            (
                "worker_progress_updates_dropped",
                "Progress updates dropped (queue full, refused by " "the API, or given up on).",
                dropped,
            ),
        ):
            counter = CounterMetricFamily(name, text, labels=labels)
            counter.add_metric(values, value)
            yield counter


def _gauge(name: str, text: str, labels: list[str], values: list[str], value: float) -> Metric:
    gauge = GaugeMetricFamily(name, text, labels=labels)
    gauge.add_metric(values, value)
    return gauge


class _TaskCollector(Collector):
    """Hands the registry the families :class:`PrometheusWorkerMetrics` builds when scraped."""

    def __init__(self, metrics: PrometheusWorkerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()
