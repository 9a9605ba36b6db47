"""Assembles a consumer with its metrics and health endpoint, as ``WORKER_METRICS_*`` ask.

Used where a worker starts (the ``run`` command, the test helper ``WorkerThread``). Without
``WORKER_METRICS_PORT`` the consumer gets the no-op recorder and ``prometheus_client`` is
never imported.
"""

from __future__ import annotations

from typing import Any

from worker_framework.consumer import Consumer
from worker_framework.health_http import MetricsServer
from worker_framework.progress import ProgressReporter
from worker_framework.settings import WorkerSettings
from worker_framework.tracing import NO_TRACER, Tracer
from worker_framework.worker import BaseWorker


def observed_consumer(
    worker: BaseWorker[Any, Any],
    settings: WorkerSettings,
    reporter: ProgressReporter,
    *,
    connection_name: str | None = None,
    tracer: Tracer = NO_TRACER,
) -> tuple[Consumer, MetricsServer | None]:
    """The consumer of ``worker``, and (when a port is set) its endpoint, not yet started."""
    if settings.worker_metrics_port is None:
        consumer = Consumer(
            worker, settings, reporter, connection_name=connection_name, tracer=tracer
        )
        return consumer, None
    from worker_framework.prometheus_metrics import PrometheusWorkerMetrics

    metrics = PrometheusWorkerMetrics(
        worker.queue_name(), worker.worker_type(), app_version=type(worker).version
    )
    consumer = Consumer(
        worker,
        settings,
        reporter,
        connection_name=connection_name,
        metrics=metrics,
        tracer=tracer,
    )
    metrics.watch(consumer.tasks_in_flight, reporter)
    server = MetricsServer(
        settings.worker_metrics_host,
        settings.worker_metrics_port,
        metrics,
        ready=consumer.consuming.is_set,
        liveness_timeout_s=settings.worker_liveness_timeout_s,
    )
    return consumer, server
