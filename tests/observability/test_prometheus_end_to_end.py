"""A real Prometheus scraping a real worker process and a real task-api, through the real broker.

Tasks of each outcome (completed, retried then completed, dead-lettered) are submitted through
task-api; Prometheus' HTTP API must then report exactly those counts, the alert rules and the
dashboard's queries must run there without error, and the dead-letter alert must fire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

# Imported, not only named, so that Pants ships the worker's module with this test.
import e2e_progress_worker
import pytest
from task_api.testing import TaskApiServer, fetch_task, free_port
from worker_framework.testing import WorkerProcess, wait_for

from .prometheus_server import PrometheusServer, require_tool
from .promql import ALERTS, alert_rules, dashboard_expressions

#: Tasks of each outcome.
N = 3
#: Bounds of the waits (a loaded CI machine); nothing is timed.
WAIT_S = 120.0
WORKER_JOB, TASK_API_JOB = "jupiter-workers", "jupiter-task-api"

REPORTS_OK = 'sum(task_api_requests_total{operation="reportTaskProgress", outcome="ok"})'
SUBMIT = """
mutation Submit($queue: String!, $payload: JSON!) {
  submitTask(queue: $queue, payload: $payload) { id }
}
"""


@pytest.fixture
def queue(make_settings: Callable[..., Any]) -> str:
    """A fresh worker queue (with the fast retries of the fixture), deleted afterwards."""
    return str(make_settings().worker_queue)


@pytest.fixture
def stack(
    rabbitmq_url: str, queue: str, fast_retries: dict[str, Any], client: Any
) -> Iterator[tuple[TaskApiServer, PrometheusServer]]:
    """task-api, a worker process on ``queue`` serving metrics, and Prometheus scraping both."""
    require_tool("prometheus")
    metrics_port = free_port()
    with TaskApiServer(extra_env={"AMQP_URL": rabbitmq_url}) as api:
        # The fixture's retry settings, so that its clean-up finds every queue the worker made.
        env = {name.upper(): str(value) for name, value in fast_retries.items()}
        env |= {
            "WORKER_QUEUE": queue,
            "GRAPHQL_URL": api.url,
            "WORKER_METRICS_PORT": str(metrics_port),
            "WORKER_METRICS_HOST": "127.0.0.1",
            "AMQP_URL": rabbitmq_url,
        }
        entry_point = f"{e2e_progress_worker.__name__}:main"
        with WorkerProcess(entry_point, "run", env=env):
            wait_for(lambda: client.consumer_count(queue) > 0, WAIT_S, message="worker consuming")
            jobs = {
                WORKER_JOB: [f"127.0.0.1:{metrics_port}"],
                TASK_API_JOB: [f"127.0.0.1:{api.port}"],
            }
            with PrometheusServer(free_port(), jobs, rule_files=[ALERTS]) as prometheus:
                yield api, prometheus


def submit_tasks(api: TaskApiServer, queue: str) -> list[str]:
    """N tasks of each outcome; their ids."""
    payloads = [
        *({"steps": 1} for _ in range(N)),
        *({"steps": 1, "fail_times": 1} for _ in range(N)),
        *({"steps": 1, "fail_permanently": True} for _ in range(N)),
    ]
    ids = []
    for payload in payloads:
        body = api.graphql(SUBMIT, {"queue": queue, "payload": payload})
        assert "errors" not in body, body
        ids.append(body["data"]["submitTask"]["id"])
    return ids


def test_prometheus_sees_the_counts_of_every_outcome(stack, queue):
    api, prometheus = stack
    submit_tasks(api, queue)
    expected_outcomes = {"completed": 2 * N, "retry_scheduled": N, "dead_lettered": N}

    outcomes = prometheus.wait_until(
        f'sum by (outcome) (worker_tasks_total{{queue="{queue}"}})',
        "outcome",
        lambda values: {k: v for k, v in values.items() if v} == expected_outcomes,
        WAIT_S,
    )
    assert {k: v for k, v in outcomes.items() if v} == expected_outcomes
    retries = f'sum(worker_retries_total{{queue="{queue}"}})'
    assert prometheus.wait_until(retries, "", lambda v: v.get("") == N, WAIT_S) == {"": N}
    dead = f'sum(worker_dead_letters_total{{queue="{queue}"}})'
    assert prometheus.wait_until(dead, "", lambda v: v.get("") == N, WAIT_S) == {"": N}

    published = "sum(task_api_submissions_published_total)"
    assert prometheus.wait_until(published, "", lambda v: v.get("") == 3 * N, WAIT_S) == {"": 3 * N}
    submitted = 'sum(task_api_requests_total{operation="submitTask", outcome="ok"})'
    assert prometheus.values(submitted, "") == {"": 3 * N}


def test_task_api_stores_every_final_status_and_counts_each_report_once(stack, queue):
    api, prometheus = stack
    ids = submit_tasks(api, queue)

    finals = wait_for(
        lambda: all_final(api, ids),
        WAIT_S,
        message="every task COMPLETED or FAILED in task-api",
    )
    assert sorted(finals) == sorted(["COMPLETED"] * (2 * N) + ["FAILED"] * N)

    def counts() -> dict[str, float]:
        """Reports and updates at one instant (one scrape), once every final one is stored."""
        at = prometheus.now()
        found = prometheus.values(
            "sum by (result) (task_api_progress_updates_total)", "result", at=at
        )
        found["reports"] = prometheus.values(REPORTS_OK, "", at=at).get("", 0.0)
        return found if found.get("stored", 0) >= 3 * N else {}

    found = wait_for(counts, WAIT_S, message="every final status stored")
    # Every reportTaskProgress field that ran was either stored or ignored as stale, once.
    assert found["reports"] == found["stored"] + found.get("ignored", 0)


def test_alert_rules_and_dashboard_queries_run_on_real_data_and_dead_letters_alert(stack, queue):
    api, prometheus = stack
    submit_tasks(api, queue)
    wait_for(
        lambda: prometheus.values(f'sum(worker_dead_letters_total{{queue="{queue}"}})', "")
        == {"": N},
        WAIT_S,
        message="dead letters scraped",
    )

    # Every rule loaded and evaluated without error.
    def evaluated() -> dict[str, Any]:
        groups = prometheus.api("rules")["groups"]
        rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
        done = all(rule.get("lastEvaluation", "").startswith("20") for rule in rules.values())
        return rules if done and len(rules) == len(alert_rules()) else {}

    rules = wait_for(evaluated, WAIT_S, message="every rule evaluated")
    assert {name: rule["health"] for name, rule in rules.items()} == {
        rule["alert"]: "ok" for rule in alert_rules()
    }
    # Every dashboard query is accepted (PromQLError otherwise) and runs.
    for expr in dashboard_expressions().values():
        prometheus.query(expr)
    throughput = dashboard_expressions()["Throughput by outcome / A"]
    # A rate needs two scrapes since the first finished task.
    wait_for(lambda: prometheus.query(throughput), WAIT_S, message=f"data for {throughput}")

    def dead_letter_alert() -> list[dict[str, Any]]:
        alerts = prometheus.api("alerts")["alerts"]
        return [
            alert
            for alert in alerts
            if alert["labels"]["alertname"] == "JupiterDeadLettersGrowing"
            and alert["labels"].get("queue") == queue
            and alert["state"] == "firing"
        ]

    [alert] = wait_for(dead_letter_alert, WAIT_S, message="JupiterDeadLettersGrowing firing")
    assert alert["labels"]["severity"] == "warning"


def all_final(api: TaskApiServer, ids: list[str]) -> list[str]:
    """Every task's status once each is COMPLETED or FAILED; empty until then."""
    statuses = []
    for task_id in ids:
        task = fetch_task(api.url, task_id)
        if task is None or task["status"] not in ("COMPLETED", "FAILED"):
            return []
        statuses.append(task["status"])
    return statuses
