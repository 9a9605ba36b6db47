"""The metric names the workers and task-api agreed to expose (docs/observability.md).

The dashboard and the alert rules may name these and nothing else of ours; a renamed metric
fails their tests here instead of leaving an empty panel or an alert that never fires.
"""

from __future__ import annotations

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

WORKER_METRICS = {
    "worker_tasks": COUNTER,
    "worker_dead_letters": COUNTER,
    "worker_task_duration_seconds": HISTOGRAM,
    "worker_queue_wait_seconds": HISTOGRAM,
    "worker_tasks_in_flight": GAUGE,
    "worker_retries": COUNTER,
    "worker_reconnects": COUNTER,
    "worker_deliveries_requeued": COUNTER,
    "worker_progress_updates_pending": GAUGE,
    "worker_progress_updates_sent": COUNTER,
    "worker_progress_updates_dropped": COUNTER,
    "worker_queue_messages_ready": GAUGE,
    "worker_last_task_finished_timestamp_seconds": GAUGE,
    "worker_build_info": GAUGE,
}

TASK_API_METRICS = {
    "task_api_requests": COUNTER,
    "task_api_request_duration_seconds": HISTOGRAM,
    "task_api_progress_updates": COUNTER,
    "task_api_submissions_published": COUNTER,
    "task_api_submission_publish_failures": COUNTER,
    "task_api_database_errors": COUNTER,
    "task_api_build_info": GAUGE,
}

#: The prefixes of our metrics; any other name in an expression is someone else's.
OUR_PREFIXES = ("worker_", "task_api_")
#: Label names that share those prefixes.
PREFIXED_LABELS = frozenset({"worker_type"})

_SUFFIXES = {COUNTER: ("_total",), GAUGE: ("",), HISTOGRAM: ("_bucket", "_sum", "_count")}


def exposed_names() -> set[str]:
    """Every series name the contract's metrics appear under when scraped."""
    return {
        f"{name}{suffix}"
        for name, kind in {**WORKER_METRICS, **TASK_API_METRICS}.items()
        for suffix in _SUFFIXES[kind]
    }
