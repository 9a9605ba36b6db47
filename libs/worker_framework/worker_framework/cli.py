"""The command line of every worker: ``run``, ``run-task``, ``enqueue``, ``dlq``, ``healthcheck``.

An app's ``main()`` runs them with ``worker_framework.launcher.run_worker``. Exit codes: 0 success;
1 failure (task failed, broker unreachable, queue missing); 2 invalid input or configuration
(bad setting, bad file, bad option), with one line on stderr saying what is wrong.

The commands are plain module-level click functions (the ``dlq`` group is in
``worker_framework.dlq_commands``); each receives the one :class:`WorkerApp` that
:func:`start` binds to the worker class. The group around them
(``worker_framework.launcher``) imports this module only when a command runs, and modules
that load pika or requests are imported inside the commands that use them.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO, TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from worker_framework.command_context import (
    REPORTER_CLOSE_TIMEOUT_S,
    WorkerApp,
    fail,
    make_reporter,
    pass_app,
)
from worker_framework.dlq_commands import dlq
from worker_framework.errors import TooManyAbandonedThreads, TopologyMismatch
from worker_framework.launcher import build_cli, run_worker
from worker_framework.progress import LogReporter
from worker_framework.settings import WorkerSettings
from worker_framework.tracing import (
    NO_TRACER,
    TRACEPARENT_HEADER,
    TraceContext,
    Tracer,
    describe_invalid,
    new_trace,
    parse_traceparent,
    publish_attributes,
)

if TYPE_CHECKING:
    from worker_framework.broker import BrokerConnection
    from worker_framework.worker import BaseWorker

__all__ = [
    "COMMANDS",
    "REPORTER_CLOSE_TIMEOUT_S",
    "WorkerApp",
    "build_cli",
    "make_reporter",
    "run_worker",
    "start",
]


@click.command(short_help="Consume tasks until SIGTERM/SIGINT (the default).")
@pass_app
def run(app: WorkerApp) -> None:
    """Consume tasks until SIGTERM/SIGINT; then finish or requeue the tasks in hand, exit 0."""
    from loguru import logger

    from worker_framework.observability import observed_consumer
    from worker_framework.shutdown import SignalHandlers

    worker = app.worker
    with app.reporter() as reporter, app.tracer() as tracer:
        consumer, endpoint = observed_consumer(worker, app.settings, reporter, tracer=tracer)
        if endpoint is not None:
            try:
                endpoint.start()  # before initialize(): a slow start is live, not yet ready
            except OSError as error:
                where = f"{endpoint.host}:{endpoint.port}"
                fail(f"cannot serve metrics on {where} (WORKER_METRICS_PORT): {error}", code=1)
        try:
            # Installed before initialize(): a SIGTERM during a slow start still exits cleanly.
            SignalHandlers(consumer.request_stop).install()
            worker.initialize()
            consumer.run()
        except (TopologyMismatch, TooManyAbandonedThreads) as error:
            fail(str(error), code=1)
        except Exception:  # noqa: BLE001 - logged (redacted) instead of a raw traceback
            logger.exception("worker stopped by an unexpected error")
            sys.exit(1)
        finally:
            worker.shutdown()
            if endpoint is not None:
                endpoint.stop()


@click.command("run-task", short_help="Run one task locally and print its result.")
@click.argument("source", type=click.File("rb"), metavar="FILE|-")
@pass_app
def run_task(app: WorkerApp, source: IO[bytes]) -> None:
    """Process one task locally without a broker; print the result JSON.

    Exit 0 when completed, 1 when it failed, 2 when the input is not a valid task.
    """
    from worker_framework.outcomes import Completed, DeadLettered
    from worker_framework.retry_policy import RetryPolicy
    from worker_framework.task_runner import TaskRunner, describe_validation_error

    worker = app.worker
    body = source.read()
    try:
        app.worker_cls.task_model().model_validate_json(body)
    except ValidationError as error:
        fail(f"invalid task: {describe_validation_error(error)}", code=2)
    worker.initialize()
    try:
        policy = RetryPolicy.from_settings(app.settings)
        runner = TaskRunner(worker, LogReporter(routine_level="INFO"), policy, app.queue)
        outcome = runner.run(body, attempt=1, redelivered=False)
    finally:
        worker.shutdown()
    if isinstance(outcome.outcome, Completed):
        click.echo(outcome.outcome.result_json.decode())
        return
    permanent = isinstance(outcome.outcome, DeadLettered)
    kind = "failed permanently" if permanent else "failed (would be retried)"
    reason = f"{outcome.outcome.error_type}: {outcome.outcome.error_message}"
    fail(f"task {outcome.task_id} {kind}: {reason}", code=1)


def _traceparent_option(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> TraceContext | None:
    if value is None:
        return None
    trace = parse_traceparent(value)
    if trace is None:
        raise click.BadParameter(
            f"not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, lowercase): "
            f"{describe_invalid(value)}"
        )
    return trace


@click.command(short_help="Publish tasks (a JSON object or JSON lines); print ids.")
@click.argument("source", type=click.File("rb"), metavar="FILE|-")
@click.option(
    "--traceparent",
    "caller_trace",
    callback=_traceparent_option,
    help="W3C trace context to publish the tasks in (default: a new trace per task).",
)
@pass_app
def enqueue(app: WorkerApp, source: IO[bytes], caller_trace: TraceContext | None) -> None:
    """Publish one task (a JSON object) or many (JSON lines) with confirms; print their ids.

    A task without an ``id`` gets a generated one. Each message carries a W3C ``traceparent``
    header. A task the broker does not confirm is named on stderr with the reason, and the
    exit code is 1.
    """
    from worker_framework.task_runner import describe_validation_error

    tasks = _read_tasks(source)
    model = app.worker_cls.task_model()
    for number, task in enumerate(tasks, start=1):
        task.setdefault("id", uuid.uuid4().hex)
        try:
            model.model_validate(task)
        except ValidationError as error:
            reason = describe_validation_error(error)
            raise click.UsageError(f"task {number} is invalid: {reason}") from None
    traces = [caller_trace or new_trace() for _ in tasks]
    with (
        app.broker("enqueue") as connection,
        app.reporter() as reporter,
        app.tracer() as tracer,
    ):
        failures = publish_tasks(connection, app.queue, app.settings, tasks, traces, tracer)
        for number, (task, trace) in enumerate(zip(tasks, traces, strict=True), start=1):
            task_id = str(task["id"])
            if number - 1 in failures:
                click.echo(
                    f"task {number} ({task_id}) not enqueued: {failures[number - 1]}", err=True
                )
                continue
            click.echo(task_id)
            reporter.report(app.queued(task_id, trace.trace_id))
    if failures:
        fail(f"{len(failures)} of {len(tasks)} tasks were not enqueued", code=1)


def publish_tasks(
    connection: BrokerConnection,
    queue: str,
    settings: WorkerSettings,
    tasks: list[dict[str, Any]],
    traces: list[TraceContext],
    tracer: Tracer = NO_TRACER,
) -> dict[int, str]:
    """Declare the worker's queues and publish ``tasks`` to ``queue``, each in its trace.

    Many confirms are in flight at once, each checked: returns the tasks the broker did not
    confirm, by index, with the reason (empty when every one was confirmed). Each task's
    publish span (when ``tracer`` records any) lasts until every confirm is in.
    """
    from worker_framework.broker import OutgoingMessage
    from worker_framework.inbound import ATTEMPT_HEADER
    from worker_framework.topology import declare_topology

    declare_topology(connection, queue, settings)
    with ExitStack() as spans:
        messages = []
        for task, trace in zip(tasks, traces, strict=True):
            span = tracer.publish(trace, f"{queue} publish", publish_attributes(queue))
            sent = spans.enter_context(span)
            headers = {ATTEMPT_HEADER: 1, TRACEPARENT_HEADER: sent.traceparent}
            messages.append(
                OutgoingMessage(json.dumps(task).encode(), headers, message_id=str(task["id"]))
            )
        return connection.publish_many(queue, messages)


def _read_tasks(source: IO[bytes]) -> list[dict[str, Any]]:
    """One JSON object, or JSON lines (one object per non-blank line)."""
    from worker_framework.task_runner import JSON_ERRORS

    text = source.read().decode("utf-8", errors="replace").strip()
    if not text:
        raise click.UsageError("no task given: the input is empty")
    try:
        items: list[Any] = [json.loads(text)]
    except JSON_ERRORS:
        items = [_json_line(number, line) for number, line in _lines(text)]
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise click.UsageError(f"task {number} is not a JSON object")
    return items


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def _json_line(number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except RecursionError:
        raise click.UsageError(
            f"line {number} is not valid JSON: nested too deeply to decode"
        ) from None
    except ValueError as error:
        raise click.UsageError(f"line {number} is not valid JSON: {error}") from None


@click.command(short_help="Exit 0 if the broker is reachable and the queue exists.")
@pass_app
def healthcheck(app: WorkerApp) -> None:
    """Exit 0 when the broker is reachable and the queue exists, else 1."""
    with app.broker("healthcheck") as connection:
        exists = connection.queue_exists(app.queue)
    if not exists:
        fail(f"queue {app.queue!r} does not exist", code=1)
    click.echo(f"ok: broker reachable, queue {app.queue!r} exists")


def start(ctx: click.Context, worker_cls: type[BaseWorker[Any, Any]]) -> None:
    """The group's own step before any command: one :class:`WorkerApp` for the invocation
    (settings are read when a command runs, not here); ``run`` when no command is given."""
    ctx.obj = WorkerApp(worker_cls)
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


#: Every command; ``--help`` lists them by name, with ``launcher.COMMAND_SUMMARIES``.
COMMANDS: list[click.Command] = [run, run_task, enqueue, dlq, healthcheck]
