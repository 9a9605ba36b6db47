"""What the framework counts, and the recorder it tells: a no-op unless metrics are on.

The consumer, settlement and time limit call a :class:`WorkerMetrics` at the moments worth
counting (a task settled, a delivery requeued, a reconnect, a turn of the I/O loop). This base
class does nothing, so a worker without ``WORKER_METRICS_PORT`` pays one empty method call and
never imports ``prometheus_client``; ``worker_framework.prometheus_metrics`` is the recorder
that counts, and ``worker_framework.health_http`` serves it with the health endpoints.

Every method is called on the I/O thread (the one owning the connection), so a recorder can
keep its per-task counts in plain numbers without locks; only scrapes come from elsewhere.
Labels are low-cardinality: queue, worker type, outcome, error type (capped at
:data:`MAX_LABEL_VALUES`), retry tier, requeue reason; never a task id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from worker_framework.broker import BrokerConnection
    from worker_framework.outcomes import Outcome
    from worker_framework.task_threads import Job

#: The framework's release, for ``worker_build_info`` (the version of its python_distribution).
FRAMEWORK_VERSION = "0.1.0"
#: Buckets (seconds) of task duration and queue wait: from 1 ms no-op tasks to 20 min ones
#: (``WORKER_TASK_TIMEOUT_S`` is 25 min by default), about 2.5x apart.
DURATION_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1200.0,
)
#: The ``outcome`` label of ``worker_tasks_total`` and ``worker_task_duration_seconds``.
OUTCOMES = ("completed", "retry_scheduled", "dead_lettered")
#: The ``reason`` label of ``worker_deliveries_requeued_total``: unstarted deliveries returned
#: at a stop, deliveries that waited too long for a thread, outcomes the broker would not
#: store, and deliveries still unsettled when the shutdown grace ran out.
REQUEUE_REASONS = ("shutdown", "time_limit", "outcome_not_stored", "abandoned")
#: Distinct values a label taken from code (an exception's class name) may have per metric;
#: later ones count as :data:`OTHER_LABEL`, so a worker raising generated classes cannot
#: blow up the time series.
MAX_LABEL_VALUES = 50
OTHER_LABEL = "other"
#: How often the main queue's depth is sampled (a passive declare, on the I/O thread).
QUEUE_DEPTH_INTERVAL_S = 15.0


@runtime_checkable
class CountedProgress(Protocol):
    """A progress reporter that counts what it sends (the GraphQL reporter does)."""

    def counts(self) -> tuple[int, int, int]:
        """Updates ``(pending, sent, dropped)`` so far."""
        ...


class WorkerMetrics:
    """The recorder interface; this base records nothing (metrics off).

    All methods run on the I/O thread and must be cheap: they sit on the per-message path.
    """

    def loop_turned(self, connection: BrokerConnection) -> None:
        """The I/O loop made one turn on ``connection`` (liveness; the queue depth when due)."""

    def heartbeat(self) -> None:
        """The consumer is alive though not consuming (waiting to reconnect, stopping)."""

    def task_settled(self, job: Job, outcome: Outcome) -> None:
        """``job``'s outcome is stored and its delivery acknowledged."""

    def requeued(self, reason: str, count: int = 1) -> None:
        """``count`` deliveries went back to the queue for ``reason`` (:data:`REQUEUE_REASONS`)."""

    def reconnecting(self) -> None:
        """The connection was lost; the consumer reconnects."""


#: The recorder of a worker without metrics.
NO_METRICS = WorkerMetrics()


def capped(seen: set[str], value: str) -> str:
    """``value`` as a label, or :data:`OTHER_LABEL` once ``seen`` holds the maximum of others."""
    if value in seen:
        return value
    if len(seen) >= MAX_LABEL_VALUES:
        return OTHER_LABEL
    seen.add(value)
    return value
