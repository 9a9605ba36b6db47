"""A worker container consuming from the host's RabbitMQ: work done, clean stop, health probe."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from containers.container_support import (
    FAST_HEALTH_PROBE,
    HeldRequestServer,
    running,
    worker_env,
)
from worker_framework.tcp_relay import TcpRelay
from worker_framework.testing import amqp_url, wait_for

WELCOME = Path("apps/email-service/examples/welcome.json")

#: docker stop's grace period in these tests: SIGKILL after it would show as exit 137.
STOP_GRACE_S = 30


def test_consumer_completes_an_enqueued_task_and_exits_0_on_docker_stop(
    image, client, worker_queue
):
    task = json.loads(WELCOME.read_text())
    with running(
        image("email-service"), env=worker_env(worker_queue), options=FAST_HEALTH_PROBE
    ) as worker:
        worker.wait_healthy()
        client.publish_task(worker_queue, task)

        outbox_file = f"/var/lib/worker/outbox/{task['id']}.eml"
        wait_for(
            lambda: worker.exec("test", "-s", outbox_file).returncode == 0,
            timeout=60,
            message=f"{outbox_file} written",
        )
        assert worker.stop(STOP_GRACE_S) == 0

    assert client.message_count(worker_queue) == 0
    assert client.message_count(f"{worker_queue}.dlq") == 0


def test_docker_stop_during_a_task_exits_0_and_returns_the_task_to_the_queue(
    image, client, worker_queue
):
    site = HeldRequestServer()
    env = worker_env(
        worker_queue,
        SCRAPER_ANSES_BASE_URL=f"http://127.0.0.1:{site.port}",
        SCRAPER_ANSES_TIMEOUT_S="300",
        WORKER_SHUTDOWN_GRACE_S="2",
    )
    try:
        with running(image("scraper-anses"), env=env, options=FAST_HEALTH_PROBE) as worker:
            worker.wait_healthy()
            task_id = client.publish_task(
                worker_queue, {"id": "cordoba-in-flight", "targetId": "cordoba"}
            )
            assert site.request_arrived.wait(timeout=60), "the task never reached the site"

            assert worker.stop(STOP_GRACE_S) == 0
    finally:
        site.release()

    requeued = client.wait_for_messages(worker_queue, 1)
    assert requeued[0].json()["id"] == task_id
    assert client.message_count(f"{worker_queue}.dlq") == 0


def test_health_probe_passes_while_running_and_fails_when_the_broker_goes(image, worker_queue):
    broker = urlsplit(amqp_url())
    credentials = f"{broker.username}:{broker.password}@" if broker.username else ""
    with TcpRelay((broker.hostname or "127.0.0.1", broker.port or 5672)) as relay:
        through_relay = urlunsplit(
            (broker.scheme, f"{credentials}127.0.0.1:{relay.port}", broker.path, broker.query, "")
        )
        with running(
            image("email-service"),
            env=worker_env(worker_queue, through_relay),
            options=FAST_HEALTH_PROBE,
        ) as worker:
            worker.wait_healthy()
            assert worker.exec("/opt/app/pex", "healthcheck").returncode == 0

            relay.cut()

            wait_for(
                lambda: worker.health() == "unhealthy",
                timeout=120,
                interval=0.5,
                message="unhealthy",
            )
            assert worker.exec("/opt/app/pex", "healthcheck").returncode != 0
