"""GET /metrics: every metric of task-sqlite_api, scraped over HTTP from a real process.

Each test reads the metrics before and after what it does and checks the difference, so the
tests do not depend on one another.
"""

from __future__ import annotations

import platform
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from task_api import __version__
from task_api.testing import TaskApiServer, graphql

REPORT = """
mutation Report($input: TaskProgressInput!) { reportTaskProgress(input: $input) { id status } }
"""
SUBMIT = """
mutation Submit($queue: String!, $payload: JSON!, $id: ID) {
  submitTask(queue: $queue, payload: $payload, id: $id) { id status }
}
"""
READ = "query Task($id: ID!) { task(id: $id) { id status } }"

#: Tokens of the guarded server: a reader (may scrape) and a worker (may not).
READER, WORKER = "read-t0ken", "w0rker-t0ken"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str, token: str | None = None) -> Samples:
    """Every sample of ``/metrics``, by name and labels."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(f"{base_url}/metrics", headers=headers, timeout=10)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_of(samples: Samples, operation: str, outcome: str) -> float:
    return value(samples, "task_api_requests_total", operation=operation, outcome=outcome)


class Scraper:
    """Reads a server's metrics now, and once more at the first :meth:`growth`, to compare.

    Scraping is itself a request, counted after its answer: the second scrape sees the
    first one, never itself.
    """

    def __init__(self, server: TaskApiServer, token: str | None = None) -> None:
        self._base_url = server.base_url
        self._token = token
        self._before = scrape(self._base_url, token)
        self._after: Samples | None = None

    def growth(self, name: str, **labels: str) -> float:
        """How much the sample grew between the two scrapes."""
        if self._after is None:
            self._after = scrape(self._base_url, self._token)
        return value(self._after, name, **labels) - value(self._before, name, **labels)


@pytest.fixture(scope="module")
def sqlite_api(amqp_url: str) -> Iterator[TaskApiServer]:
    """An open task-api on SQLite of its own."""
    with TaskApiServer(extra_env={"AMQP_URL": amqp_url}) as server:
        yield server


@pytest.fixture(scope="module")
def guarded_api(amqp_url: str) -> Iterator[TaskApiServer]:
    """A task-api with tokens: a reader and a report-only worker."""
    tokens = {READER: ["read"], WORKER: ["report"]}
    with TaskApiServer(tokens=tokens, extra_env={"AMQP_URL": amqp_url}) as server:
        yield server


def report_field(alias: str, task_id: str | None = None) -> str:
    """One aliased ``reportTaskProgress`` field of a batch (a fresh task unless given)."""
    task_id = f"t-{uuid.uuid4().hex}" if task_id is None else task_id
    values = f'taskId: "{task_id}", workerType: "demo", status: PROCESSING'
    return f"{alias}: reportTaskProgress(input: {{{values}}}) {{ id }}"


def report(url: str, task_id: str, *, token: str | None = None, **fields: Any) -> dict[str, Any]:
    values = {"taskId": task_id, "workerType": "demo", "status": "PROCESSING", **fields}
    return graphql(url, REPORT, {"input": values}, token=token)


def test_metrics_are_prometheus_text_with_every_series_from_the_start(sqlite_api):
    samples = scrape(sqlite_api.base_url)

    for operation in ("reportTaskProgress", "submitTask", "task", "tasks", "other", "page"):
        for outcome in ("ok", "error", "forbidden", "bad_request", "too_large"):
            key = (
                "task_api_requests_total",
                frozenset({("operation", operation), ("outcome", outcome)}),
            )
            assert key in samples, key
    for name in (
        "task_api_submissions_published_total",
        "task_api_submission_publish_failures_total",
        "task_api_database_errors_total",
    ):
        assert (name, frozenset()) in samples, name
    for result in ("stored", "ignored"):
        assert ("task_api_progress_updates_total", frozenset({("result", result)})) in samples


def test_build_info_names_the_version_and_python(sqlite_api):
    samples = scrape(sqlite_api.base_url)

    labels = {"version": __version__, "python": platform.python_version()}
    assert value(samples, "task_api_build_info", **labels) == 1


def test_each_report_of_a_batch_counts_as_one_report_task_progress(sqlite_api):
    scraper = Scraper(sqlite_api)
    fields = " ".join(report_field(f"r{n}") for n in range(3))

    body = sqlite_api.graphql(f"mutation {{ {fields} }}")

    assert "errors" not in body, body
    assert (
        scraper.growth("task_api_requests_total", operation="reportTaskProgress", outcome="ok") == 3
    )


def test_reports_that_change_a_task_are_stored_and_stale_ones_ignored(sqlite_api):
    task_id = f"t-{uuid.uuid4().hex}"
    scraper = Scraper(sqlite_api)

    report(sqlite_api.url, task_id, progress=50)
    report(sqlite_api.url, task_id, progress=10)  # behind the first: stale
    report(sqlite_api.url, task_id, progress=50)  # a duplicate: stale

    assert scraper.growth("task_api_progress_updates_total", result="stored") == 1
    assert scraper.growth("task_api_progress_updates_total", result="ignored") == 2


def test_a_confirmed_submission_counts_as_published(sqlite_api, queue_name):
    scraper = Scraper(sqlite_api)

    body = sqlite_api.graphql(SUBMIT, {"queue": queue_name, "payload": {"n": 1}})

    assert "errors" not in body, body
    assert scraper.growth("task_api_submissions_published_total") == 1
    assert scraper.growth("task_api_requests_total", operation="submitTask", outcome="ok") == 1


def test_a_submission_to_a_missing_queue_counts_as_a_publish_failure_and_an_error(sqlite_api):
    scraper = Scraper(sqlite_api)

    body = sqlite_api.graphql(SUBMIT, {"queue": f"no-such-queue-{uuid.uuid4().hex}", "payload": {}})

    assert body["errors"][0]["extensions"]["code"] == "PUBLISH_FAILED"
    assert scraper.growth("task_api_submission_publish_failures_total") == 1
    assert scraper.growth("task_api_submissions_published_total") == 0
    assert scraper.growth("task_api_requests_total", operation="submitTask", outcome="error") == 1


def test_queries_count_by_root_field(sqlite_api):
    scraper = Scraper(sqlite_api)

    body = sqlite_api.graphql(
        'query { one: task(id: "a") { id } two: task(id: "b") { id }'
        " tasks { pageInfo { hasNextPage } } }"
    )

    assert "errors" not in body, body
    assert scraper.growth("task_api_requests_total", operation="task", outcome="ok") == 2
    assert scraper.growth("task_api_requests_total", operation="tasks", outcome="ok") == 1


def test_invalid_input_to_one_field_is_a_bad_request_for_that_field_only(sqlite_api):
    scraper = Scraper(sqlite_api)
    body = sqlite_api.graphql(f"mutation {{ {report_field('good')} {report_field('bad', '')} }}")

    assert body["errors"][0]["path"] == ["bad"], body
    assert (
        scraper.growth("task_api_requests_total", operation="reportTaskProgress", outcome="ok") == 1
    )
    assert (
        scraper.growth(
            "task_api_requests_total", operation="reportTaskProgress", outcome="bad_request"
        )
        == 1
    )


def test_a_document_that_does_not_validate_is_a_bad_request_of_its_fields(sqlite_api):
    scraper = Scraper(sqlite_api)

    body = sqlite_api.graphql('query { task(id: "a") { id noSuchField } }')

    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert scraper.growth("task_api_requests_total", operation="task", outcome="bad_request") == 1


@pytest.mark.parametrize(
    ("headers", "data", "outcome"),
    [
        (
            {"Content-Type": "text/plain"},
            b'{"query": "{ tasks { pageInfo { hasNextPage } } }"}',
            "bad_request",
        ),
        ({"Content-Type": "application/json"}, b"{not json", "bad_request"),
        ({"Content-Type": "application/json"}, b"{" + b" " * 2_000_000 + b"}", "too_large"),
        ({"Content-Type": "application/json"}, b'{"query": "{ syntax error"}', "bad_request"),
    ],
    ids=["unsupported-media-type", "not-json", "body-too-large", "does-not-parse"],
)
def test_requests_refused_before_running_count_as_other(sqlite_api, headers, data, outcome):
    scraper = Scraper(sqlite_api)

    response = requests.post(sqlite_api.url, data=data, headers=headers, timeout=30)

    assert response.status_code in (200, 400, 413, 415)
    assert scraper.growth("task_api_requests_total", operation="other", outcome=outcome) == 1


def test_page_healthz_and_unknown_paths_are_counted(sqlite_api):
    scraper = Scraper(sqlite_api)

    assert requests.get(f"{sqlite_api.base_url}/", timeout=10).status_code == 200
    assert requests.get(f"{sqlite_api.base_url}/healthz", timeout=10).status_code == 200
    assert requests.get(f"{sqlite_api.base_url}/nowhere", timeout=10).status_code == 404

    assert scraper.growth("task_api_requests_total", operation="page", outcome="ok") == 1
    assert scraper.growth("task_api_requests_total", operation="healthz", outcome="ok") == 1
    assert scraper.growth("task_api_requests_total", operation="other", outcome="bad_request") == 1
    # The Scraper's first scrape, seen by its second.
    assert scraper.growth("task_api_requests_total", operation="metrics", outcome="ok") == 1


def test_request_durations_are_observed_once_per_request_and_operation(sqlite_api):
    scraper = Scraper(sqlite_api)
    fields = " ".join(report_field(f"r{n}") for n in range(4))

    sqlite_api.graphql(f"mutation {{ {fields} }}")
    sqlite_api.graphql(READ, {"id": "unknown"})

    count = "task_api_request_duration_seconds_count"
    assert scraper.growth(count, operation="reportTaskProgress") == 1
    assert scraper.growth(count, operation="task") == 1
    assert (
        scraper.growth("task_api_request_duration_seconds_bucket", operation="task", le="+Inf") == 1
    )
    assert scraper.growth("task_api_request_duration_seconds_sum", operation="task") > 0


def test_a_database_error_is_counted_and_the_report_is_an_error(sqlite_api):
    task_id = f"t-{uuid.uuid4().hex}"
    database = sqlite_api.database_url.removeprefix("sqlite:///")
    # A real error of the real database, for this task only: a trigger refusing its history.
    with sqlite3.connect(database) as conn:
        conn.execute(
            f"CREATE TRIGGER refuse_{task_id.replace('-', '_')} BEFORE INSERT ON task_api_history"
            f" WHEN NEW.task_id = '{task_id}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    scraper = Scraper(sqlite_api)

    body = report(sqlite_api.url, task_id, progress=10)

    assert body["errors"], body
    assert scraper.growth("task_api_database_errors_total") == 1
    assert (
        scraper.growth("task_api_requests_total", operation="reportTaskProgress", outcome="error")
        == 1
    )


def test_metrics_need_the_read_scope_when_tokens_are_configured(guarded_api):
    url = f"{guarded_api.base_url}/metrics"

    assert requests.get(url, timeout=10).status_code == 401
    worker = requests.get(url, headers={"Authorization": f"Bearer {WORKER}"}, timeout=10)
    assert worker.status_code == 403
    assert "read" in worker.json()["errors"][0]["message"]
    assert "task_api_requests_total" in names(scrape(guarded_api.base_url, READER))


def test_refused_requests_count_as_forbidden(guarded_api):
    scraper = Scraper(guarded_api, READER)

    report(guarded_api.url, f"t-{uuid.uuid4().hex}", token=READER)  # a reader may not report
    requests.get(f"{guarded_api.base_url}/metrics", timeout=10)  # no token
    requests.post(
        guarded_api.url, json={"query": "{ tasks { pageInfo { hasNextPage } } }"}, timeout=10
    )

    assert (
        scraper.growth(
            "task_api_requests_total", operation="reportTaskProgress", outcome="forbidden"
        )
        == 1
    )
    assert scraper.growth("task_api_requests_total", operation="metrics", outcome="forbidden") == 1
    assert scraper.growth("task_api_requests_total", operation="other", outcome="forbidden") == 1


def test_metrics_public_serves_metrics_without_a_token_and_nothing_else(amqp_url):
    env = {"AMQP_URL": amqp_url, "TASK_API_METRICS_PUBLIC": "true"}
    with TaskApiServer(tokens={READER: ["read"]}, extra_env=env) as server:
        assert "task_api_requests_total" in names(scrape(server.base_url))
        assert requests.get(f"{server.base_url}/", timeout=10).status_code == 401
