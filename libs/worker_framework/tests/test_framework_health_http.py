"""Liveness, readiness and a hostile network, against a real worker's HTTP endpoint."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
from framework_probe_worker import ProbeWorker
from metrics_scrape import http_get, labels_of, metered, sample, scrape
from worker_framework.health_http import MAX_CONNECTIONS
from worker_framework.tcp_relay import TcpRelay
from worker_framework.testing import amqp_url, wait_for

#: Short, so the tests see a stuck loop quickly; the loop turns every 0.2 s when healthy.
LIVENESS_TIMEOUT_S = 2.0


def status_of(port: int, path: str) -> int | None:
    """The status of ``GET path``, or None while nothing answers."""
    try:
        return http_get(port, path)[0]
    except OSError:
        return None


def raw_request(port: int, data: bytes) -> bytes:
    """Send ``data`` as is; everything the server answers before it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_liveness_fails_while_the_io_loop_is_blocked_and_recovers(make_settings, worker_thread):
    settings = metered(make_settings, worker_liveness_timeout_s=LIVENESS_TIMEOUT_S)
    port = settings.worker_metrics_port
    worker = worker_thread(ProbeWorker, settings)
    assert status_of(port, "/livez") == 200
    release = threading.Event()
    connection = worker.consumer._settlement.connection  # the live connection of the I/O loop
    # A callback that never returns is what a stuck I/O thread looks like from outside.
    assert connection.call_soon_threadsafe(lambda: release.wait(60))
    try:
        wait_for(lambda: status_of(port, "/livez") == 503, message="liveness failing")
        status, body = http_get(port, "/livez")
        assert status == 503
        assert f"WORKER_LIVENESS_TIMEOUT_S={LIVENESS_TIMEOUT_S:g}" in body
    finally:
        release.set()
    wait_for(lambda: status_of(port, "/livez") == 200, message="liveness back")


def test_readiness_fails_while_reconnecting_and_liveness_holds(
    client, make_settings, worker_thread
):
    broker = urlsplit(amqp_url().split(",")[0])
    with TcpRelay((broker.hostname or "127.0.0.1", broker.port or 5672)) as relay:
        settings = metered(
            make_settings,
            amqp_url=f"amqp://guest:guest@127.0.0.1:{relay.port}/%2F",
            worker_liveness_timeout_s=LIVENESS_TIMEOUT_S,
        )
        port, labels = settings.worker_metrics_port, labels_of(settings)
        worker_thread(ProbeWorker, settings)
        assert status_of(port, "/readyz") == 200
        relay.cut()
        wait_for(lambda: status_of(port, "/readyz") == 503, message="not ready once cut off")
        # Cut off for longer than the liveness timeout: waiting to reconnect is alive.
        until = time.monotonic() + 2 * LIVENESS_TIMEOUT_S
        while time.monotonic() < until:
            assert status_of(port, "/livez") == 200
            assert status_of(port, "/readyz") == 503
            time.sleep(0.2)
        relay.restore()
        wait_for(lambda: status_of(port, "/readyz") == 200, timeout=60, message="ready again")
        assert sample(scrape(port), "worker_reconnects_total", **labels) == 1
        client.publish_task(settings.worker_queue, {"id": "after-partition"})
        wait_for(lambda: sample(scrape(port), "worker_tasks_total", outcome="completed", **labels))


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 1000000\r\n\r\npartial body", b" 405 "),
        (b"DELETE /livez HTTP/1.1\r\n\r\n", b" 405 "),
        (b"BREW /readyz HTTP/1.1\r\n\r\n", b" 405 "),
        (b"GET /../../etc/passwd HTTP/1.1\r\n\r\n", b" 404 "),
        (b"GET /metrics/../livez HTTP/1.1\r\n\r\n", b" 404 "),
        (b"\x00\xff\xfe not http at all\r\n\r\n", b" 400 "),
        (b"GET /livez HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", b" 431 "),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", b" 414 "),
        (b"GET /livez HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n", b" 431 "),
    ],
    ids=[
        "post-with-body",
        "delete",
        "unknown-method",
        "path-traversal",
        "dot-segments",
        "garbage",
        "huge-header",
        "huge-path",
        "too-many-headers",
    ],
)
def test_hostile_requests_are_answered_and_the_endpoint_keeps_serving(
    make_settings, worker_thread, request_bytes, status
):
    settings = metered(make_settings)
    port = settings.worker_metrics_port
    worker_thread(ProbeWorker, settings)
    answer = raw_request(port, request_bytes)
    assert answer.split(b"\r\n", 1)[0].find(status) > 0, answer[:200]
    assert status_of(port, "/livez") == 200
    assert status_of(port, "/metrics") == 200


def test_past_the_bound_new_connections_are_closed_at_once_and_the_endpoint_recovers():
    # A bare endpoint whose idle clients keep their slots for a minute, so that the bound,
    # not the request timeout, decides what happens to the next connection, however slow
    # the machine is.
    from worker_framework.health_http import MetricsServer
    from worker_framework.prometheus_metrics import PrometheusWorkerMetrics
    from worker_framework.testing import free_port

    server = MetricsServer(
        "127.0.0.1",
        free_port(),
        PrometheusWorkerMetrics("q", "w"),
        lambda: True,
        60,
        request_timeout_s=60,
    ).start()
    try:
        idle = [
            socket.create_connection(("127.0.0.1", server.port)) for _ in range(MAX_CONNECTIONS)
        ]
        try:
            extra = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            extra.sendall(b"GET /livez HTTP/1.1\r\n\r\n")
            assert extra.recv(100) == b""  # closed unanswered, not queued behind the idle ones
            extra.close()
        finally:
            for sock in idle:
                sock.close()
        wait_for(lambda: status_of(server.port, "/livez") == 200, message="served again")
    finally:
        server.stop()


def test_a_flood_of_idle_connections_does_not_stop_the_worker(client, make_settings, worker_thread):
    settings = metered(make_settings)
    port, labels = settings.worker_metrics_port, labels_of(settings)
    worker_thread(ProbeWorker, settings)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3 * MAX_CONNECTIONS)]
    try:
        client.publish_task(settings.worker_queue, {"id": "during-flood"})
    finally:
        for sock in idle:
            sock.close()
    wait_for(lambda: status_of(port, "/livez") == 200, message="served again")
    wait_for(lambda: sample(scrape(port), "worker_tasks_total", outcome="completed", **labels))


def test_a_head_request_gets_no_body():
    # http.server would answer HEAD without a handler with 501 and a body; here it is refused
    # like every method but GET. Checked on a bare endpoint: no broker needed.
    from worker_framework.health_http import MetricsServer
    from worker_framework.prometheus_metrics import PrometheusWorkerMetrics
    from worker_framework.testing import free_port

    server = MetricsServer(
        "127.0.0.1", free_port(), PrometheusWorkerMetrics("q", "w"), lambda: False, 60
    ).start()
    try:
        answer = raw_request(server.port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 405") or head.startswith(b"HTTP/1.1 405"), head
        assert body == b""
        assert status_of(server.port, "/readyz") == 503
        assert status_of(server.port, "/livez") == 200
    finally:
        server.stop()
