"""Nothing is lost when a worker dies, the broker drops connections, or a task runs long."""

from __future__ import annotations

import signal
import subprocess
import threading

import pytest
from framework_probe_worker import ProbeWorker
from worker_framework.consumer import Consumer
from worker_framework.errors import TopologyMismatch
from worker_framework.progress import LogReporter
from worker_framework.retry_policy import dead_letter_queue_name
from worker_framework.testing import (
    WorkerProcess,
    WorkerThread,
    amqp_url,
    close_broker_connections,
    settings_env,
    unique_queue_name,
    wait_for,
)

PROBE = "framework_probe_worker:main"


def _env(settings, **extra):
    return {**settings_env(settings), "WORKER_PREFETCH": "1", **extra}


def unacknowledged(queue: str) -> int:
    """Deliveries of ``queue`` the broker counts as unacknowledged (needs ``rabbitmqctl``)."""
    listing = subprocess.run(
        [
            "rabbitmqctl",
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_unacknowledged",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = dict(line.split("\t") for line in listing.splitlines() if "\t" in line)
    return int(counts[queue])


def test_task_of_a_killed_worker_is_redelivered_and_completed_by_another(
    client, make_settings, reply_queue, tmp_path
):
    settings = make_settings()
    marker = tmp_path / "started"
    with WorkerProcess(PROBE, "run", env=_env(settings)) as first:
        wait_for(
            lambda: client.consumer_count(settings.worker_queue) == 1,
            message="first worker consuming",
        )
        client.publish_task(
            settings.worker_queue,
            {
                "id": "survivor",
                "sleep_s": 60,
                "sleep_unless_redelivered": True,
                "started_marker": str(marker),
            },
            reply_to=reply_queue,
        )
        wait_for(marker.exists, message="task started in the first worker")
        first.send_signal(signal.SIGKILL)
        first.wait()
    with WorkerProcess(PROBE, "run", env=_env(settings)) as second:
        [reply] = client.wait_for_messages(reply_queue, 1, timeout=30)
        assert reply.json()["pid"] == second.pid
        assert reply.json()["redelivered"] is True
        second.send_signal(signal.SIGTERM)
        assert second.wait() == 0


def test_acks_of_later_tasks_never_acknowledge_an_earlier_delivery_still_running(
    client, make_settings, reply_queue, tmp_path
):
    # Later deliveries finish first and are acknowledged together (a ``multiple`` ack where
    # their tags allow it); the running one's delivery must stay unacknowledged, so that it
    # comes back when the worker dies.
    settings = make_settings()
    marker = tmp_path / "started"
    env = _env(settings, WORKER_PREFETCH="20", WORKER_CONCURRENCY="2")
    with WorkerProcess(PROBE, "run", env=env) as first:
        wait_for(lambda: client.consumer_count(settings.worker_queue) == 1)
        client.publish_task(
            settings.worker_queue,
            {
                "id": "running",
                "sleep_s": 60,
                "sleep_unless_redelivered": True,
                "started_marker": str(marker),
            },
            reply_to=reply_queue,
        )
        wait_for(marker.exists, message="the long task started")
        # The first quick task holds the second thread while the others queue up behind it;
        # then they finish in a burst, and their acks go out together.
        client.publish_task(settings.worker_queue, {"id": "quick-0", "sleep_s": 1.0})
        for number in range(1, 15):
            client.publish_task(settings.worker_queue, {"id": f"quick-{number}"})
        wait_for(
            lambda: unacknowledged(settings.worker_queue) == 1,
            timeout=30,
            message="the quick tasks acknowledged, the running one not",
        )
        first.send_signal(signal.SIGKILL)
        first.wait()
    with WorkerProcess(PROBE, "run", env=_env(settings)) as second:
        [reply] = client.wait_for_messages(reply_queue, 1, timeout=30)
        assert reply.json()["id"] == "running"
        assert reply.json()["redelivered"] is True
        second.send_signal(signal.SIGTERM)
        assert second.wait() == 0


def test_worker_reconnects_after_broker_closes_its_connection_and_loses_nothing(
    client, make_settings, reply_queue
):
    settings = make_settings(worker_prefetch=5, worker_concurrency=3)
    name = unique_queue_name("reconnect-worker")
    task_ids = {f"r-{n}" for n in range(12)}
    with WorkerThread(ProbeWorker, settings, connection_name=name) as worker:
        for task_id in sorted(task_ids):
            client.publish_task(
                settings.worker_queue, {"id": task_id, "sleep_s": 0.3}, reply_to=reply_queue
            )
        first = client.wait_for_messages(reply_queue, 1)
        assert close_broker_connections(name) == 1
        wait_for(lambda: worker.consumer.reconnects >= 1 and worker.consumer.consuming.is_set())
        replied = {m.json()["id"] for m in first}

        def all_replied():
            while (message := client.get(reply_queue)) is not None:
                replied.add(message.json()["id"])
            return replied >= task_ids

        wait_for(all_replied, timeout=30, message="every task completed")
        # Acking an old delivery tag on the new channel would make the broker close it
        # (PRECONDITION_FAILED) and force another reconnect.
        assert worker.consumer.reconnects == 1
    assert client.message_count(settings.worker_queue) == 0


def test_task_longer_than_four_heartbeats_completes_without_redelivery(
    client, make_settings, reply_queue
):
    settings = make_settings(worker_heartbeat_s=1)
    with WorkerThread(ProbeWorker, settings) as worker:
        client.publish_task(
            settings.worker_queue, {"id": "long", "sleep_s": 4.5}, reply_to=reply_queue
        )
        [reply] = client.wait_for_messages(reply_queue, 1, timeout=30)
        assert worker.consumer.reconnects == 0
    assert reply.json()["attempt"] == 1
    assert reply.json()["redelivered"] is False
    assert client.message_count(reply_queue) == 0


def test_sigterm_mid_task_finishes_the_task_and_exits_zero(
    client, make_settings, reply_queue, tmp_path
):
    settings = make_settings()
    marker = tmp_path / "started"
    with WorkerProcess(PROBE, "run", env=_env(settings)) as worker:
        wait_for(lambda: client.consumer_count(settings.worker_queue) == 1)
        client.publish_task(
            settings.worker_queue,
            {"id": "finish-me", "sleep_s": 1.5, "started_marker": str(marker)},
            reply_to=reply_queue,
        )
        wait_for(marker.exists)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()
        [reply] = client.wait_for_messages(reply_queue, 1)
    assert reply.json()["id"] == "finish-me"
    assert client.message_count(settings.worker_queue) == 0


def test_sigterm_with_task_longer_than_grace_returns_it_to_the_queue(
    client, make_settings, tmp_path
):
    settings = make_settings()
    marker = tmp_path / "started"
    env = _env(settings, WORKER_SHUTDOWN_GRACE_S="0.5")
    with WorkerProcess(PROBE, "run", env=env) as worker:
        wait_for(lambda: client.consumer_count(settings.worker_queue) == 1)
        client.publish_task(
            settings.worker_queue, {"id": "too-long", "sleep_s": 60, "started_marker": str(marker)}
        )
        wait_for(marker.exists)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()
    [message] = wait_for(lambda: client.peek(settings.worker_queue))
    assert message.json()["id"] == "too-long"


def test_second_signal_exits_at_once_and_the_task_returns_to_the_queue(
    client, make_settings, tmp_path
):
    settings = make_settings()
    marker = tmp_path / "started"
    with WorkerProcess(PROBE, "run", env=_env(settings)) as worker:
        wait_for(lambda: client.consumer_count(settings.worker_queue) == 1)
        client.publish_task(
            settings.worker_queue,
            {"id": "interrupted", "sleep_s": 60, "started_marker": str(marker)},
        )
        wait_for(marker.exists)
        worker.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping" in worker.output())
        worker.send_signal(signal.SIGINT)
        assert worker.wait() != 0
    wait_for(lambda: client.message_count(settings.worker_queue) == 1)


def test_queue_declared_with_other_arguments_is_reported_clearly(client, make_settings):
    settings = make_settings(worker_queue_type="quorum")
    client.declare_reply_queue(
        settings.worker_queue
    )  # a plain classic queue already holds the name
    consumer = Consumer(ProbeWorker(settings), settings, LogReporter())
    with pytest.raises(TopologyMismatch, match="already exists with different arguments"):
        consumer.run()


def test_quorum_queues_work_end_to_end(client, make_settings, reply_queue):
    settings = make_settings(worker_queue_type="quorum")
    with WorkerThread(ProbeWorker, settings):
        client.publish_task(settings.worker_queue, {"fail_times": 1}, reply_to=reply_queue)
        [reply] = client.wait_for_messages(reply_queue, 1)
    assert reply.json()["attempt"] == 2


def test_task_over_its_time_limit_is_abandoned_and_retried_then_dead_lettered(
    client, make_settings
):
    settings = make_settings(worker_task_timeout_s=0.3, worker_max_retries=1, worker_concurrency=1)
    with WorkerThread(ProbeWorker, settings):
        client.publish_task(settings.worker_queue, {"id": "slowpoke", "sleep_s": 2})
        [dead] = client.wait_for_messages(
            dead_letter_queue_name(settings.worker_queue), 1, timeout=30
        )
    assert dead.header("x-error-type") == "TaskTimeout"
    assert dead.header("x-attempt") == 2


def test_time_limit_counts_from_delivery_not_from_when_a_thread_starts_the_task(
    client, make_settings, reply_queue
):
    # "second" waits about 3 s behind "first" (under half the limit, so it is not requeued)
    # and then needs 6.5 s: within the limit on its own, over it counted from delivery. Each
    # side has a margin of a second or more, for a busy CI machine.
    settings = make_settings(worker_task_timeout_s=8, worker_max_retries=0, worker_concurrency=1)
    with WorkerThread(ProbeWorker, settings):
        client.publish_task(
            settings.worker_queue, {"id": "first", "sleep_s": 3.0}, reply_to=reply_queue
        )
        client.publish_task(settings.worker_queue, {"id": "second", "sleep_s": 6.5})
        [reply] = client.wait_for_messages(reply_queue, 1)
        [dead] = client.wait_for_messages(
            dead_letter_queue_name(settings.worker_queue), 1, timeout=30
        )
    assert reply.json()["id"] == "first"
    assert dead.json()["id"] == "second"
    assert dead.header("x-error-type") == "TaskTimeout"
    assert "counted from delivery" in dead.header("x-error-message")


def test_delivery_still_waiting_for_a_thread_at_half_the_limit_is_requeued_unstarted(
    client, make_settings, reply_queue
):
    # "hog" holds the only thread until it times out at 2 s; "waiter", prefetched behind it,
    # goes back to the queue at 1 s instead of aging towards the broker's consumer_timeout.
    settings = make_settings(
        worker_task_timeout_s=2, worker_max_retries=0, worker_concurrency=1, worker_prefetch=2
    )
    with WorkerThread(ProbeWorker, settings):
        client.publish_task(settings.worker_queue, {"id": "hog", "sleep_s": 4})
        client.publish_task(settings.worker_queue, {"id": "waiter"}, reply_to=reply_queue)
        [reply] = client.wait_for_messages(reply_queue, 1, timeout=30)
        [dead] = client.wait_for_messages(
            dead_letter_queue_name(settings.worker_queue), 1, timeout=30
        )
    assert reply.json()["id"] == "waiter"
    assert reply.json()["redelivered"] is True  # it went back to the queue once at least
    assert reply.json()["attempt"] == 1  # never started, so no attempt was used
    assert dead.json()["id"] == "hog"
    assert dead.header("x-error-type") == "TaskTimeout"


def test_unreachable_first_node_in_amqp_url_falls_through_to_the_next(
    client, make_settings, reply_queue
):
    settings = make_settings(amqp_url=f"amqp://guest:guest@127.0.0.1:1/%2F,{amqp_url()}")
    with WorkerThread(ProbeWorker, settings):
        client.publish_task(settings.worker_queue, {"id": "via-second-node"}, reply_to=reply_queue)
        [reply] = client.wait_for_messages(reply_queue, 1)
    assert reply.json()["id"] == "via-second-node"


def test_worker_redeclares_and_resumes_when_its_queue_is_deleted_under_it(
    client, make_settings, reply_queue
):
    settings = make_settings()
    with WorkerThread(ProbeWorker, settings) as worker:
        client.delete_queue(settings.worker_queue)
        wait_for(lambda: worker.consumer.reconnects >= 1 and worker.consumer.consuming.is_set())
        client.publish_task(settings.worker_queue, {"id": "after-delete"}, reply_to=reply_queue)
        [reply] = client.wait_for_messages(reply_queue, 1)
    assert reply.json()["id"] == "after-delete"


def test_worker_keeps_retrying_an_unreachable_broker_and_still_stops_on_request(make_settings):
    settings = make_settings(amqp_url="amqp://guest:guest@127.0.0.1:1/%2F")
    consumer = Consumer(ProbeWorker(settings), settings, LogReporter())
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    wait_for(lambda: thread.is_alive())
    consumer.request_stop()
    thread.join(10)
    assert not thread.is_alive()
    assert not consumer.consuming.is_set()


def test_past_the_abandoned_thread_limit_the_worker_exits_for_a_restart_returning_its_tasks(
    client, make_settings
):
    settings = make_settings(worker_max_retries=0)
    env = _env(
        settings,
        WORKER_TASK_TIMEOUT_S="0.5",
        WORKER_MAX_ABANDONED_THREADS="1",
        WORKER_SHUTDOWN_GRACE_S="1",
    )
    with WorkerProcess(PROBE, "run", env=env) as worker:
        wait_for(lambda: client.consumer_count(settings.worker_queue) == 1)
        for n in range(4):
            client.publish_task(settings.worker_queue, {"id": f"hang-{n}", "sleep_s": 60})
        client.publish_task(settings.worker_queue, {"id": "ordinary"})
        assert worker.wait(60) == 1, worker.output()
        assert "WORKER_MAX_ABANDONED_THREADS=1" in worker.output()
    # Two tasks timed out (the second pushed the abandoned threads past 1); the rest are back.
    dead = client.wait_for_messages(dead_letter_queue_name(settings.worker_queue), 2)
    assert {message.header("x-error-type") for message in dead} == {"TaskTimeout"}
    wait_for(lambda: client.message_count(settings.worker_queue) == 3)
    assert {m.json()["id"] for m in client.peek(settings.worker_queue)} == {
        "hang-2",
        "hang-3",
        "ordinary",
    }
