"""The worker's HTTP endpoint: ``/metrics``, ``/livez`` and ``/readyz`` on one port.

Served (when ``WORKER_METRICS_PORT`` is set) by the standard library's threading HTTP server
in a daemon thread, so an orchestrator can probe the worker without an ``exec``:

- ``GET /livez``: 200 while the I/O loop turned within ``WORKER_LIVENESS_TIMEOUT_S``; 503 once
  it is stuck (a callback or a publish that never returns). Waiting to reconnect counts as
  alive: the reconnect loop stamps the same heartbeat.
- ``GET /readyz``: 200 while connected and consuming; 503 while connecting, reconnecting or
  stopping.
- ``GET /metrics``: the worker's metrics in Prometheus' text format.

The server is small and bounded, since anything on the network may talk to it: only ``GET``
of those three paths (other paths 404, other methods 405), no request body is ever read, a
client has :data:`REQUEST_TIMEOUT_S` to send its request, and at most
:data:`MAX_CONNECTIONS` are served at once (more are closed at once).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from loguru import logger

#: Seconds a client may take to send its request line and headers: a slow or silent client
#: must not hold a thread.
REQUEST_TIMEOUT_S = 5.0
#: Connections served at once: probes and a scraper or two need a handful; a flood of
#: connections is closed rather than given a thread each.
MAX_CONNECTIONS = 16
PATHS = ("/metrics", "/livez", "/readyz")


class ObservedWorker(Protocol):
    """What the endpoint reads: the metrics and the liveness stamp of one worker."""

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and their content type."""
        ...

    def seconds_since_turn(self) -> float:
        """How long ago the I/O loop last turned."""
        ...


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most :data:`MAX_CONNECTIONS` of them."""

    daemon_threads = True
    block_on_close = False
    #: The listen backlog (socketserver's default is 5): a burst of probes and scrapes waits
    #: to be accepted, or closed, instead of having its connection attempts dropped.
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], endpoint: MetricsServer) -> None:
        self.endpoint = endpoint
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    server: _BoundedServer
    timeout = REQUEST_TIMEOUT_S
    server_version = "worker"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.endpoint.request_timeout_s)

    def do_GET(self) -> None:  # the name http.server looks up
        path = self.path.split("?", 1)[0]
        endpoint = self.server.endpoint
        if path == "/metrics":
            self._send(HTTPStatus.OK, *endpoint.metrics.render())
        elif path == "/livez":
            self._send(*endpoint.liveness())
        elif path == "/readyz":
            self._send(*endpoint.readiness())
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found: try /metrics, /livez or /readyz\n")

    def __getattr__(self, name: str) -> Any:
        # http.server answers a method without a ``do_<METHOD>`` with 501; every method but GET
        # is simply not allowed here.
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"only GET\n", allow="GET")

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        allow: str | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if allow:
            self.send_header("Allow", allow)
        # The body was never read: the connection cannot carry another request.
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # http.server names it so
        # Probes every few seconds would drown the log; errors are answered, not logged.
        return


class MetricsServer:
    """Serves one worker's metrics and health on ``host:port`` (see the module docstring).

    Parameters:
        host, port: where to listen (``WORKER_METRICS_HOST``, ``WORKER_METRICS_PORT``).
        metrics: the worker's metrics and liveness stamp.
        ready: True while the worker is connected and consuming.
        liveness_timeout_s: ``WORKER_LIVENESS_TIMEOUT_S``.
        request_timeout_s: how long a client may take to send its request.
    """

    def __init__(
        self,
        host: str,
        port: int,
        metrics: ObservedWorker,
        ready: Callable[[], bool],
        liveness_timeout_s: float,
        *,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = port
        self.metrics = metrics
        self._ready = ready
        self._liveness_timeout_s = liveness_timeout_s
        self.request_timeout_s = request_timeout_s
        self._server: _BoundedServer | None = None

    def start(self) -> MetricsServer:
        """Listen and serve from a daemon thread; raises OSError when the port is taken."""
        self._server = _BoundedServer((self.host, self.port), self)
        thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )
        thread.start()
        logger.info("metrics and health on http://{}:{}/metrics", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def liveness(self) -> tuple[HTTPStatus, bytes]:
        """200 while the I/O loop turns, 503 once it has been still too long."""
        still = self.metrics.seconds_since_turn()
        if still <= self._liveness_timeout_s:
            return HTTPStatus.OK, b"ok\n"
        text = (
            f"the I/O loop has not turned for {still:.0f}s "
            f"(WORKER_LIVENESS_TIMEOUT_S={self._liveness_timeout_s:g})\n"
        )
        return HTTPStatus.SERVICE_UNAVAILABLE, text.encode()

    def readiness(self) -> tuple[HTTPStatus, bytes]:
        """200 while connected and consuming, else 503."""
        if self._ready():
            return HTTPStatus.OK, b"ready\n"
        return (
            HTTPStatus.SERVICE_UNAVAILABLE,
            b"not consuming (connecting, reconnecting or stopping)\n",
        )
