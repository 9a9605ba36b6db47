"""task-api's Prometheus metrics, served on ``GET /metrics``.

Requests by operation and outcome, their latency, progress updates stored and ignored,
submissions published (or not) and database errors. Labels are bounded: operations are the
schema's root fields plus the HTTP routes, outcomes a fixed five; never a task id, a queue or
a token. Every series exists from the start (at zero), so that ``rate()`` and alert rules see
the first increment.

Operations: ``reportTaskProgress``, ``submitTask``, ``task``, ``tasks`` (one count per root
field of a GraphQL request: a worker's batch of 200 reports counts 200), ``other`` (any other
root field, a request refused before its document was read, an unknown path), ``page``,
``healthz``, ``metrics``. Outcomes: ``ok``, ``error`` (task-api's fault: storage, broker),
``forbidden`` (401, 403, a missing scope), ``bad_request`` (malformed, invalid, unknown path),
``too_large`` (413).
"""

from __future__ import annotations

import platform
import sqlite3
from collections.abc import Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from task_api import __version__

GRAPHQL_OPERATIONS = ("reportTaskProgress", "submitTask", "task", "tasks")
#: What a request that is not one of the GraphQL operations above counts as.
OTHER = "other"
ROUTES = ("page", "healthz", "metrics")
OPERATIONS = (*GRAPHQL_OPERATIONS, OTHER, *ROUTES)

OK = "ok"
ERROR = "error"
FORBIDDEN = "forbidden"
BAD_REQUEST = "bad_request"
TOO_LARGE = "too_large"
OUTCOMES = (OK, ERROR, FORBIDDEN, BAD_REQUEST, TOO_LARGE)

#: From a cached progress batch (about a millisecond) to a submission waiting on an
#: unreachable broker (the publisher tries every node of AMQP_URL, tens of seconds).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

#: (operation, outcome) -> how many root fields (or requests) ended so.
Tally = Mapping[tuple[str, str], int]


class ProgressCount:
    """The progress reports of one request, stored and ignored, counted by its resolvers.

    Added to the metrics once the request's work is committed: a batch of reports costs two
    additions to a counter, not one per report, and a batch rolled back counts nothing. The
    resolvers of one request run one after the other in one thread: no lock is needed.
    """

    __slots__ = ("stored", "ignored")

    def __init__(self) -> None:
        self.stored = 0
        self.ignored = 0

    def add(self, *, stored: bool) -> None:
        """Count one report."""
        if stored:
            self.stored += 1
        else:
            self.ignored += 1


def operation_label(field_name: str) -> str:
    """The ``operation`` label of a GraphQL root field: its name if known, else ``other``."""
    return field_name if field_name in GRAPHQL_OPERATIONS else OTHER


def outcome_of_status(status: int) -> str:
    """The outcome of a request answered with the HTTP ``status``."""
    if status < 400:
        return OK
    if status in (401, 403):
        return FORBIDDEN
    if status == 413:
        return TOO_LARGE
    if status < 500:
        return BAD_REQUEST
    return ERROR


def is_database_error(error: BaseException) -> bool:
    """Whether ``error`` came from the database driver (sqlite3 or psycopg).

    psycopg's classes are recognised by their module, so that a SQLite deployment never
    imports psycopg.
    """
    if isinstance(error, sqlite3.Error):
        return True
    return any(cls.__module__.split(".")[0] == "psycopg" for cls in type(error).__mro__)


class TaskApiMetrics:
    """The metrics of one task-api process, in a registry of their own.

    The methods are what the server calls where things happen; each costs a lock and an
    addition (the series are made once here, not looked up per call).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        requests = Counter(
            "task_api_requests",
            "Requests by operation (one per GraphQL root field) and outcome.",
            ["operation", "outcome"],
            registry=self.registry,
        )
        duration = Histogram(
            "task_api_request_duration_seconds",
            "Time from a request's arrival to its response, by operation.",
            ["operation"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        updates = Counter(
            "task_api_progress_updates",
            "Progress reports that changed a task (stored) or were stale (ignored).",
            ["result"],
            registry=self.registry,
        )
        self._requests = {
            (operation, outcome): requests.labels(operation, outcome)
            for operation in OPERATIONS
            for outcome in OUTCOMES
        }
        self._duration = {operation: duration.labels(operation) for operation in OPERATIONS}
        self._stored = updates.labels("stored")
        self._ignored = updates.labels("ignored")
        self._published = Counter(
            "task_api_submissions_published",
            "Submitted tasks RabbitMQ confirmed (by a request or by the outbox sweep).",
            registry=self.registry,
        )
        self._publish_failures = Counter(
            "task_api_submission_publish_failures",
            "Publishes of submitted tasks that failed (broker unreachable or refusing).",
            registry=self.registry,
        )
        self._database_errors = Counter(
            "task_api_database_errors",
            "Errors raised by the database (SQLite or PostgreSQL).",
            registry=self.registry,
        )
        Gauge(
            "task_api_build_info",
            "Always 1; the labels say which task-api and Python run.",
            ["version", "python"],
            registry=self.registry,
        ).labels(__version__, platform.python_version()).set(1)

    def request_served(self, tally: Tally, duration_s: float) -> None:
        """Count one request's operations by outcome, and observe its latency once for each
        operation it held."""
        for (operation, outcome), count in tally.items():
            self._requests[operation, outcome].inc(count)
        for operation in {operation for operation, _ in tally}:
            self._duration[operation].observe(duration_s)

    def progress_updates(self, count: ProgressCount) -> None:
        """Count a request's progress reports, stored or ignored as stale."""
        if count.stored:
            self._stored.inc(count.stored)
        if count.ignored:
            self._ignored.inc(count.ignored)

    def submission_published(self) -> None:
        """Count one submitted task confirmed by RabbitMQ."""
        self._published.inc()

    def submission_publish_failed(self) -> None:
        """Count one publish of a submitted task that failed."""
        self._publish_failures.inc()

    def database_error(self) -> None:
        """Count one error of the database."""
        self._database_errors.inc()

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
