"""What every command of the command line shares: one :class:`WorkerApp` per invocation.

Commands receive it with ``@pass_app``. It builds the worker from its settings on first use,
assembles the progress reporter the settings ask for, and is the one place where a broker
that cannot be reached becomes one line on stderr and exit code 1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from worker_framework.errors import (
    BrokerUnavailable,
    PublishFailed,
    SettingsError,
    TopologyMismatch,
)
from worker_framework.progress import LogReporter, ProgressReporter, ProgressUpdate, TaskStatus
from worker_framework.settings import WorkerSettings, load_settings
from worker_framework.tracing import NO_TRACER, Tracer, otel_configured

if TYPE_CHECKING:
    from worker_framework.broker import BrokerConnection
    from worker_framework.worker import BaseWorker

#: Seconds the progress reporter gets to flush at exit.
REPORTER_CLOSE_TIMEOUT_S = 5.0


def make_reporter(settings: WorkerSettings) -> ProgressReporter:
    """The GraphQL reporter when ``GRAPHQL_URL`` is set, else a :class:`LogReporter`."""
    if settings.graphql_url:
        # Imported here: workers without a progress API never load the HTTP client.
        from worker_framework.graphql_reporter import GraphQLReporter

        return GraphQLReporter(settings.graphql_url, settings.graphql_token)
    return LogReporter()


def make_tracer(service_name: str) -> Tracer:
    """The OpenTelemetry tracer when an OTLP endpoint is configured, else one that does nothing.

    Without ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) no OpenTelemetry
    module is imported: the SDK is an optional extra of the framework (``otel``). Raises
    :class:`SettingsError` when an endpoint is set and the SDK is not installed.
    """
    if not otel_configured():
        return NO_TRACER
    try:
        from worker_framework.otel import OtelTracer
    except ImportError as error:
        raise SettingsError(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            f"set, but the OpenTelemetry SDK is not installed ({error.name}): install the"
            " framework with its extra 'otel', or unset the variable",
        ) from None
    return OtelTracer(service_name)


class WorkerApp:
    """What every command shares: the worker class, and (built on first use) its settings,
    one worker instance and its queue name. An invalid setting exits 2 naming the variable."""

    def __init__(self, worker_cls: type[BaseWorker[Any, Any]]) -> None:
        self.worker_cls = worker_cls
        self._worker: BaseWorker[Any, Any] | None = None

    @property
    def worker(self) -> BaseWorker[Any, Any]:
        """The worker instance, built with settings loaded from the environment."""
        if self._worker is None:
            from worker_framework.logging import configure_logging

            try:
                settings = load_settings(self.worker_cls.settings_model())
                configure_logging(settings)
                self._worker = self.worker_cls(settings=settings)
                self._worker.queue_name()  # a missing queue name is a configuration error too
            except SettingsError as error:
                fail(str(error), code=2)
        return self._worker

    @property
    def settings(self) -> WorkerSettings:
        """The worker's settings."""
        return self.worker.settings

    @property
    def queue(self) -> str:
        """The queue this worker consumes."""
        return self.worker.queue_name()

    def queued(self, task_id: str, trace_id: str | None = None) -> ProgressUpdate:
        """The QUEUED update for a task just published (in the trace ``trace_id``)."""
        return ProgressUpdate(
            task_id, self.worker.worker_type(), TaskStatus.QUEUED, attempt=1, trace_id=trace_id
        )

    @contextmanager
    def broker(self, purpose: str) -> Iterator[BrokerConnection]:
        """A connection named for this worker and ``purpose``, closed on the way out.

        The one place where an unreachable broker, a failed publish or a queue declared with
        other arguments becomes one line on stderr and exit code 1.
        """
        from worker_framework.topology import connect

        name = f"{self.worker.worker_type()}:{self.queue}:{purpose}"
        try:
            connection = connect(self.settings, name)
        except BrokerUnavailable as error:
            fail(f"cannot reach RabbitMQ: {error}", code=1)
        try:
            yield connection
        except (BrokerUnavailable, PublishFailed, TopologyMismatch) as error:
            fail(str(error), code=1)
        finally:
            connection.close()

    @contextmanager
    def tracer(self) -> Iterator[Tracer]:
        """The tracer the environment asks for, named after the worker type, flushed at the end."""
        try:
            tracer = make_tracer(self.worker.worker_type())
        except SettingsError as error:
            fail(str(error), code=2)
        try:
            yield tracer
        finally:
            tracer.shutdown()

    @contextmanager
    def reporter(self) -> Iterator[ProgressReporter]:
        """The progress reporter the settings ask for, flushed on the way out."""
        reporter = make_reporter(self.settings)
        try:
            yield reporter
        finally:
            reporter.close(REPORTER_CLOSE_TIMEOUT_S)


pass_app = click.make_pass_decorator(WorkerApp)


def fail(message: str, *, code: int) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
