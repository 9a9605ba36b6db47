"""Worker metrics, scraped over HTTP from real workers consuming from the real broker."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

from framework_probe_worker import ProbeWorker
from metrics_scrape import Samples, http_get, labels_of, metered, parse, sample, scrape
from worker_framework.metrics import MAX_LABEL_VALUES, OTHER_LABEL
from worker_framework.outcomes import DeadLettered
from worker_framework.prometheus_metrics import PrometheusWorkerMetrics
from worker_framework.retry_policy import dead_letter_queue_name
from worker_framework.task_threads import Job
from worker_framework.testing import settings_env, subprocess_env, wait_for

PROBE = "framework_probe_worker:main"


def test_each_outcome_is_counted_with_its_duration_and_queue_wait(
    client, make_settings, worker_thread
):
    settings = metered(make_settings)
    port = settings.worker_metrics_port
    labels = labels_of(settings)
    before = time.time()
    worker_thread(ProbeWorker, settings)
    for number in range(4):
        client.publish_task(settings.worker_queue, {"id": f"ok-{number}"})
    for number in range(2):
        client.publish_task(settings.worker_queue, {"id": f"retry-{number}", "fail_times": 1})
    for number in range(3):
        client.publish_task(
            settings.worker_queue, {"id": f"dead-{number}", "fail_permanently": True}
        )

    def settled() -> Samples:
        samples = scrape(port)
        done = sample(samples, "worker_tasks_total", outcome="completed", **labels)
        return samples if done == 6 else {}

    samples = wait_for(settled, message="4 + 2 retried tasks completed")
    assert sample(samples, "worker_tasks_total", outcome="retry_scheduled", **labels) == 2
    assert sample(samples, "worker_tasks_total", outcome="dead_lettered", **labels) == 3
    assert sample(samples, "worker_retries_total", delay_ms="50", **labels) == 2
    assert sample(samples, "worker_dead_letters_total", error_type="WorkerError", **labels) == 3
    for outcome, count in (("completed", 6), ("retry_scheduled", 2), ("dead_lettered", 3)):
        duration = {"outcome": outcome, **labels}
        assert sample(samples, "worker_task_duration_seconds_count", **duration) == count
        assert (
            sample(samples, "worker_task_duration_seconds_bucket", le="+Inf", **duration) == count
        )
        assert sample(samples, "worker_task_duration_seconds_sum", **duration) > 0
    assert sample(samples, "worker_queue_wait_seconds_count", **labels) == 11
    # A no-op task takes far less than 20 minutes: every one is in the last finite bucket.
    assert sample(samples, "worker_queue_wait_seconds_bucket", le="1200.0", **labels) == 11
    assert sample(samples, "worker_tasks_in_flight", **labels) == 0
    finished = sample(samples, "worker_last_task_finished_timestamp_seconds", **labels)
    assert before <= finished <= time.time()
    assert sample(samples, "worker_reconnects_total", **labels) == 0
    build = {
        "worker_type": "probe",
        "version": "unknown",
        "framework_version": "0.1.0",
        "python": f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}",
    }
    assert sample(samples, "worker_build_info", **build) == 1


def test_no_metric_is_labelled_with_a_task_id(client, make_settings, worker_thread):
    settings = metered(make_settings)
    worker_thread(ProbeWorker, settings)
    client.publish_task(settings.worker_queue, {"id": "secret-task-id", "fail_permanently": True})
    wait_for(lambda: "dead_lettered" in http_get(settings.worker_metrics_port, "/metrics")[1])
    assert "secret-task-id" not in http_get(settings.worker_metrics_port, "/metrics")[1]


def test_a_running_task_is_in_flight_until_settled(client, make_settings, worker_thread, tmp_path):
    settings = metered(make_settings)
    port, labels = settings.worker_metrics_port, labels_of(settings)
    marker = tmp_path / "started"
    worker_thread(ProbeWorker, settings)
    client.publish_task(
        settings.worker_queue, {"id": "slow", "sleep_s": 2, "started_marker": str(marker)}
    )
    wait_for(marker.exists, message="task started")
    assert sample(scrape(port), "worker_tasks_in_flight", **labels) == 1
    wait_for(lambda: sample(scrape(port), "worker_tasks_total", outcome="completed", **labels))
    assert sample(scrape(port), "worker_tasks_in_flight", **labels) == 0


def test_the_main_queue_depth_is_sampled(client, make_settings, worker_thread, tmp_path):
    settings = metered(make_settings, worker_prefetch=1)
    marker = tmp_path / "started"
    # A classic main queue has no arguments: declared as the worker will, so it can be filled.
    client.declare_reply_queue(settings.worker_queue)
    client.publish_task(
        settings.worker_queue, {"id": "first", "sleep_s": 5, "started_marker": str(marker)}
    )
    for number in range(5):
        client.publish_task(settings.worker_queue, {"id": f"waiting-{number}"})
    worker_thread(ProbeWorker, settings)
    wait_for(marker.exists)
    ready = sample(
        scrape(settings.worker_metrics_port),
        "worker_queue_messages_ready",
        queue=settings.worker_queue,
    )
    # Sampled at the loop's first turn: the broker may or may not have delivered the first.
    assert ready in (5, 6)


def test_deliveries_returned_at_a_stop_are_counted_by_reason(
    client, make_settings, worker_thread, tmp_path
):
    settings = metered(make_settings, worker_prefetch=5, worker_shutdown_grace_s=0.5)
    port, labels = settings.worker_metrics_port, labels_of(settings)
    marker = tmp_path / "started"
    worker = worker_thread(ProbeWorker, settings)
    client.publish_task(
        settings.worker_queue, {"id": "long", "sleep_s": 5, "started_marker": str(marker)}
    )
    for number in range(3):
        client.publish_task(settings.worker_queue, {"id": f"unstarted-{number}"})
    wait_for(marker.exists, message="long task started")
    wait_for(lambda: len(worker.consumer.unsettled) == 4, message="all four delivered")
    # Stop the consumer but not yet the endpoint (the fixture stops both after the test).
    worker.consumer.request_stop()

    def returned() -> Samples:
        samples = scrape(port)
        if sample(samples, "worker_deliveries_requeued_total", reason="abandoned", **labels):
            return samples
        return {}

    samples = wait_for(returned, message="grace period over")
    assert sample(samples, "worker_deliveries_requeued_total", reason="shutdown", **labels) == 3
    assert sample(samples, "worker_deliveries_requeued_total", reason="abandoned", **labels) == 1
    assert sample(samples, "worker_deliveries_requeued_total", reason="time_limit", **labels) == 0
    status, _ = http_get(port, "/readyz")
    assert status == 503


def test_time_limit_requeues_a_waiting_delivery_and_retries_the_overrunning_task(
    client, make_settings, worker_thread
):
    settings = metered(make_settings, worker_prefetch=2, worker_task_timeout_s=1)
    port, labels = settings.worker_metrics_port, labels_of(settings)
    worker_thread(ProbeWorker, settings)
    client.publish_task(settings.worker_queue, {"id": "overrun", "sleep_s": 3})
    client.publish_task(settings.worker_queue, {"id": "waiting"})

    def limited() -> Samples:
        samples = scrape(port)
        retried = sample(samples, "worker_tasks_total", outcome="retry_scheduled", **labels)
        requeued = sample(
            samples, "worker_deliveries_requeued_total", reason="time_limit", **labels
        )
        return samples if retried and requeued else {}

    samples = wait_for(limited, timeout=30, message="time limit applied")
    assert sample(samples, "worker_retries_total", delay_ms="50", **labels) >= 1


def test_error_type_labels_are_capped():
    metrics = PrometheusWorkerMetrics("capped-queue", "probe")
    for number in range(MAX_LABEL_VALUES + 10):
        job = Job(payload=None, generation=0, delivered_at=time.monotonic())
        metrics.task_settled(job, DeadLettered(f"GeneratedError{number}", "boom"))
    samples = parse(metrics.render()[0].decode())
    labels = {"queue": "capped-queue", "worker_type": "probe"}
    error_types = {
        dict(key[1])["error_type"] for key in samples if key[0] == "worker_dead_letters_total"
    }
    assert len(error_types) == MAX_LABEL_VALUES + 1
    assert sample(samples, "worker_dead_letters_total", error_type=OTHER_LABEL, **labels) == 10
    assert sample(samples, "worker_tasks_total", outcome="dead_lettered", **labels) == 60


def test_the_run_command_serves_metrics_and_health(client, make_settings, worker_process):
    settings = metered(make_settings)
    port = settings.worker_metrics_port
    worker = worker_process(PROBE, "run", env=settings_env(settings))
    wait_for(lambda: _status(port, "/readyz") == 200, message="worker ready")
    assert _status(port, "/livez") == 200
    client.publish_task(settings.worker_queue, {"id": "via-cli"})
    labels = labels_of(settings)
    wait_for(lambda: sample(scrape(port), "worker_tasks_total", outcome="completed", **labels))
    worker.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()


def test_a_taken_metrics_port_stops_the_worker_with_one_line(make_settings, worker_process):
    settings = metered(make_settings)
    with socket.create_server(("0.0.0.0", settings.worker_metrics_port)):  # noqa: S104
        worker = worker_process(PROBE, "run", env=settings_env(settings))
        assert worker.wait() == 1
    assert "WORKER_METRICS_PORT" in worker.output()
    assert "Traceback" not in worker.output()


def test_without_a_port_prometheus_client_is_never_imported():
    code = (
        "import sys\n"
        "from framework_probe_worker import ProbeWorker\n"
        "from worker_framework.observability import observed_consumer\n"
        "from worker_framework.progress import LogReporter\n"
        "from worker_framework.settings import WorkerSettings\n"
        "worker = ProbeWorker(WorkerSettings())\n"
        "consumer, endpoint = observed_consumer(worker, worker.settings, LogReporter())\n"
        "assert endpoint is None\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    env = subprocess_env()
    env.pop("WORKER_METRICS_PORT", None)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False", result.stderr


def _status(port: int, path: str) -> int | None:
    try:
        return http_get(port, path)[0]
    except OSError:
        return None


def test_an_outcome_the_broker_will_not_store_is_requeued_and_counted(
    client, make_settings, worker_thread
):
    settings = metered(make_settings)
    port, labels = settings.worker_metrics_port, labels_of(settings)
    dead_letters = dead_letter_queue_name(settings.worker_queue)
    # A full dead-letter queue that refuses publishes: the broker nacks every dead letter.
    policy = f"test-full-{settings.worker_queue}"
    rabbitmqctl(
        "set_policy",
        "--apply-to",
        "queues",
        policy,
        f"^{re.escape(dead_letters)}$",
        '{"max-length": 0, "overflow": "reject-publish"}',
    )
    try:
        worker_thread(ProbeWorker, settings)
        client.publish_task(settings.worker_queue, {"id": "unstorable", "fail_permanently": True})
        wait_for(
            lambda: sample(
                scrape(port),
                "worker_deliveries_requeued_total",
                reason="outcome_not_stored",
                **labels,
            ),
            timeout=60,
            message="the delivery returned after every fallback was refused",
        )
        assert sample(scrape(port), "worker_tasks_total", outcome="dead_lettered", **labels) == 0
    finally:
        rabbitmqctl("clear_policy", policy)
    wait_for(
        lambda: sample(scrape(port), "worker_tasks_total", outcome="dead_lettered", **labels),
        timeout=60,
        message="dead-lettered once the queue takes messages again",
    )


def rabbitmqctl(*args: str) -> None:
    """Run ``rabbitmqctl`` on the test broker (policies on this test's own queues only)."""
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)
