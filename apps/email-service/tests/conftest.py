"""Fixtures shared by the email-service tests: real SMTP servers, TLS material, contexts.

Servers listen on 127.0.0.1 on a free port taken by binding port 0, so tests never collide.
TLS certificates come from a throw-away CA made by trustme; the worker trusts it through
``SMTP_CA_FILE``, exactly as a deployment with a private relay would.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from email_service.settings import EmailSettings
from email_smtp_server import ServerFactory, SmtpServer, smtp_settings, start_server
from worker_framework import TaskContext
from worker_framework.testing import RecordingReporter


@pytest.fixture
def worker_settings_model() -> type[EmailSettings]:
    """The framework plugin's ``make_settings`` builds email settings."""
    return EmailSettings


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throw-away certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA certificate as a PEM file, for ``SMTP_CA_FILE``."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def server_tls_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A server context whose certificate is valid for 127.0.0.1 and localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def start_smtp_server(server_tls_context: ssl.SSLContext) -> Iterator[ServerFactory]:
    """``start_smtp_server(security="starttls", **handler_options)``: servers for one test.

    See :func:`email_smtp_server.start_server`; all are stopped when the test ends.
    """
    controllers: list[Controller] = []

    def start(security: str = "starttls", **handler_options: Any) -> SmtpServer:
        controller, server = start_server(security, server_tls_context, **handler_options)
        controllers.append(controller)
        return server

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp_server(start_smtp_server: ServerFactory) -> SmtpServer:
    """A well-behaved server requiring STARTTLS and AUTH."""
    return start_smtp_server("starttls")


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections but never sends the SMTP greeting."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


@pytest.fixture
def settings_for() -> Callable[..., EmailSettings]:
    """``settings_for(server_or_port, ca_file, **overrides)``: see :func:`smtp_settings`."""
    return smtp_settings


@pytest.fixture
def reporter() -> RecordingReporter:
    """A progress reporter that records updates."""
    return RecordingReporter()


@pytest.fixture
def make_context(reporter: RecordingReporter) -> Callable[..., TaskContext]:
    """``make_context(task_id, attempt=1, redelivered=False)``: a context like the framework's."""

    def make(task_id: str, attempt: int = 1, redelivered: bool = False) -> TaskContext:
        return TaskContext(
            task_id=task_id,
            attempt=attempt,
            redelivered=redelivered,
            queue="email-service-test",
            worker_type="email",
            reporter=reporter,
        )

    return make
