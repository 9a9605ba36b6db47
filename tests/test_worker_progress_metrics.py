"""A worker's progress-delivery metrics, scraped over HTTP, with a real task-api and without."""

from __future__ import annotations

import http.client

from e2e_progress_worker import E2EWorker
from prometheus_client.parser import text_string_to_metric_families
from task_api.testing import TaskApiServer, free_port
from worker_framework.graphql_reporter import GraphQLReporter
from worker_framework.testing import wait_for


def progress_counts(port: int) -> dict[str, float]:
    """The worker's ``worker_progress_updates_*`` samples by name, scraped over HTTP."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("worker_progress_updates_")
        and sample.labels == {"worker_type": "e2e"}
    }


def test_updates_the_api_accepts_are_counted_as_sent(client, make_settings, worker_thread):
    settings = make_settings(worker_metrics_port=free_port())
    with TaskApiServer() as api:
        reporter = GraphQLReporter(api.url, None)
        try:
            worker_thread(E2EWorker, settings, reporter=reporter)
            for number in range(3):
                client.publish_task(settings.worker_queue, {"id": f"sent-{number}", "steps": 2})

            def delivered() -> dict[str, float]:
                counts = progress_counts(settings.worker_metrics_port)
                done = counts["worker_progress_updates_sent_total"] >= 3
                return counts if done and not counts["worker_progress_updates_pending"] else {}

            counts = wait_for(delivered, 30, message="progress delivered")
        finally:
            reporter.close(5)
    # Each task reports at most PROCESSING, two steps and COMPLETED; its final status always.
    assert 3 <= counts["worker_progress_updates_sent_total"] <= 12
    assert counts["worker_progress_updates_dropped_total"] == 0


def test_updates_waiting_for_an_api_that_is_down_are_pending_then_dropped_when_full(
    client, make_settings, worker_thread
):
    settings = make_settings(worker_metrics_port=free_port())
    nowhere = f"http://127.0.0.1:{free_port()}/graphql"
    reporter = GraphQLReporter(nowhere, None, max_pending=1)
    try:
        worker_thread(E2EWorker, settings, reporter=reporter)
        for number in range(5):
            client.publish_task(settings.worker_queue, {"id": f"unsent-{number}", "steps": 0})

        def piling_up() -> dict[str, float]:
            counts = progress_counts(settings.worker_metrics_port)
            return counts if counts["worker_progress_updates_dropped_total"] > 0 else {}

        counts = wait_for(piling_up, 30, message="updates dropped")
    finally:
        reporter.close(0)
    assert counts["worker_progress_updates_pending"] >= 1
    assert counts["worker_progress_updates_sent_total"] == 0
