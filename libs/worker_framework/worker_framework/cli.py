"""The command line of every worker: ``run``, ``run-task``, ``enqueue``, ``dlq``, ``healthcheck``.

An app's ``main.py`` is ``def main() -> None: run_worker(MyWorker)``. Exit codes: 0 success;
1 failure (task failed, broker unreachable, queue missing); 2 invalid input or configuration
(bad setting, bad file, bad option), with one line on stderr saying what is wrong.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from typing import IO, Any, NoReturn

import click
from loguru import logger
from pydantic import ValidationError

from worker_framework.broker import BrokerConnection, Delivery, OutgoingMessage
from worker_framework.consumer import Consumer, connect, declare_topology
from worker_framework.errors import (
    BrokerUnavailable,
    PublishFailed,
    SettingsError,
    TooManyAbandonedThreads,
    TopologyMismatch,
    UnencodableMessage,
)
from worker_framework.inbound import ATTEMPT_HEADER, DROPPED_HEADERS_HEADER, normalise
from worker_framework.logging import configure_logging
from worker_framework.outcomes import (
    ERROR_MESSAGE_HEADER,
    ERROR_TYPE_HEADER,
    FAILED_AT_HEADER,
    Completed,
    DeadLettered,
    replay_message,
)
from worker_framework.progress import (
    LogReporter,
    ProgressUpdate,
    TaskStatus,
    make_reporter,
)
from worker_framework.retry_policy import RetryPolicy, dead_letter_queue_name
from worker_framework.settings import WorkerSettings, load_settings
from worker_framework.shutdown import SignalHandlers
from worker_framework.task_runner import (
    JSON_ERRORS,
    TaskRunner,
    describe_validation_error,
    task_id_from,
)
from worker_framework.worker import BaseWorker

#: Seconds the progress reporter gets to flush at exit.
REPORTER_CLOSE_TIMEOUT_S = 5.0


class _Env:
    """What every command needs: the worker class, its settings and a worker instance."""

    def __init__(self, worker_cls: type[BaseWorker[Any, Any]]) -> None:
        self.worker_cls = worker_cls
        try:
            self.settings: WorkerSettings = load_settings(worker_cls.settings_model)
            configure_logging(self.settings)
            self.worker = worker_cls(settings=self.settings)
            self.queue = self.worker.queue_name()
        except SettingsError as error:
            _fail(str(error), code=2)

    def queued(self, task_id: str) -> ProgressUpdate:
        """The QUEUED update for a task just published."""
        return ProgressUpdate(task_id, self.worker.worker_type(), TaskStatus.QUEUED, attempt=1)

    def connect(self, purpose: str) -> BrokerConnection:
        try:
            return connect(self.settings, f"{self.worker.worker_type()}:{self.queue}:{purpose}")
        except BrokerUnavailable as error:
            _fail(f"cannot reach RabbitMQ: {error}", code=1)


def _fail(message: str, *, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _read_tasks(source: IO[bytes]) -> list[dict[str, Any]]:
    """One JSON object, or JSON lines (one object per non-blank line)."""
    text = source.read().decode("utf-8", errors="replace").strip()
    if not text:
        raise click.UsageError("no task given: the input is empty")
    try:
        whole = json.loads(text)
    except JSON_ERRORS:
        whole = None
    if whole is not None:
        items: list[Any] = [whole]
    else:
        items = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except RecursionError:
                    raise click.UsageError(
                        f"line {number} is not valid JSON: nested too deeply to decode"
                    ) from None
                except ValueError as error:
                    raise click.UsageError(f"line {number} is not valid JSON: {error}") from None
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise click.UsageError(f"task {number} is not a JSON object")
    return items


def build_cli(worker_cls: type[BaseWorker[Any, Any]]) -> click.Group:
    """The click group for ``worker_cls``; :func:`run_worker` runs it."""

    @click.group(
        invoke_without_command=True,
        help=f"{worker_cls.__name__}: consume tasks from RabbitMQ (default command: run). "
        "Configured by environment variables (AMQP_URL, WORKER_QUEUE, WORKER_PREFETCH, ...).",
    )
    @click.pass_context
    def cli(ctx: click.Context) -> None:
        if ctx.invoked_subcommand is None:
            ctx.invoke(run)

    @cli.command(short_help="Consume tasks until SIGTERM/SIGINT (the default).")
    def run() -> None:
        """Consume tasks until SIGTERM/SIGINT; then finish or requeue the tasks in hand, exit 0."""
        env = _Env(worker_cls)
        reporter = make_reporter(env.settings)
        try:
            consumer = Consumer(env.worker, env.settings, reporter)
            # Installed before initialize(): a SIGTERM during a slow start still exits cleanly.
            SignalHandlers(consumer.request_stop).install()
            env.worker.initialize()
            consumer.run()
        except (TopologyMismatch, TooManyAbandonedThreads) as error:
            _fail(str(error), code=1)
        except Exception:  # noqa: BLE001 - logged (redacted) instead of a raw traceback
            logger.exception("worker stopped by an unexpected error")
            sys.exit(1)
        finally:
            env.worker.shutdown()
            reporter.close(REPORTER_CLOSE_TIMEOUT_S)

    @cli.command("run-task", short_help="Run one task locally and print its result.")
    @click.argument("source", type=click.File("rb"), metavar="FILE|-")
    def run_task(source: IO[bytes]) -> None:
        """Process one task locally without a broker; print the result JSON.

        Exit 0 when completed, 1 when it failed, 2 when the input is not a valid task.
        """
        env = _Env(worker_cls)
        body = source.read()
        try:
            env.worker_cls.task_model().model_validate_json(body)
        except ValidationError as error:
            _fail(f"invalid task: {describe_validation_error(error)}", code=2)
        env.worker.initialize()
        try:
            runner = TaskRunner(
                env.worker,
                LogReporter(routine_level="INFO"),
                RetryPolicy.from_settings(env.settings),
                env.queue,
            )
            run = runner.run(body, attempt=1, redelivered=False)
        finally:
            env.worker.shutdown()
        if isinstance(run.outcome, Completed):
            click.echo(run.outcome.result_json.decode())
            return
        kind = (
            "failed permanently"
            if isinstance(run.outcome, DeadLettered)
            else "failed (would be retried)"
        )
        _fail(
            f"task {run.task_id} {kind}: {run.outcome.error_type}: {run.outcome.error_message}",
            code=1,
        )

    @cli.command(short_help="Publish tasks (a JSON object or JSON lines); print ids.")
    @click.argument("source", type=click.File("rb"), metavar="FILE|-")
    def enqueue(source: IO[bytes]) -> None:
        """Publish one task (a JSON object) or many (JSON lines) with confirms; print their ids.

        A task without an ``id`` gets a generated one. A task the broker does not confirm is
        named on stderr with the reason, and the exit code is 1.
        """
        env = _Env(worker_cls)
        tasks = _read_tasks(source)
        model = env.worker_cls.task_model()
        for number, task in enumerate(tasks, start=1):
            task.setdefault("id", uuid.uuid4().hex)
            try:
                model.model_validate(task)
            except ValidationError as error:
                raise click.UsageError(
                    f"task {number} is invalid: {describe_validation_error(error)}"
                ) from None
        connection = env.connect("enqueue")
        reporter = make_reporter(env.settings)
        try:
            declare_topology(connection, env.queue, env.settings)
            ids = [str(task["id"]) for task in tasks]
            messages = [
                OutgoingMessage(json.dumps(task).encode(), {ATTEMPT_HEADER: 1}, message_id=task_id)
                for task, task_id in zip(tasks, ids, strict=True)
            ]
            # Many confirms in flight at once; every message is confirmed or reported below.
            failures = connection.publish_many(env.queue, messages)
            for number, task_id in enumerate(ids, start=1):
                if number - 1 in failures:
                    click.echo(
                        f"task {number} ({task_id}) not enqueued: {failures[number - 1]}", err=True
                    )
                    continue
                click.echo(task_id)
                reporter.report(env.queued(task_id))
            if failures:
                _fail(f"{len(failures)} of {len(tasks)} tasks were not enqueued", code=1)
        except (BrokerUnavailable, PublishFailed, TopologyMismatch) as error:
            _fail(str(error), code=1)
        finally:
            connection.close()
            reporter.close(REPORTER_CLOSE_TIMEOUT_S)

    @cli.group()
    def dlq() -> None:
        """Inspect, replay or purge the dead-letter queue."""

    @dlq.command("list", short_help="Show dead letters without removing them.")
    @click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=100,
        show_default=True,
        help="Show at most this many.",
    )
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter.")
    def dlq_list(limit: int, as_json: bool) -> None:
        """Show dead letters (id, error type, attempts, failed-at, message); removes nothing."""
        env = _Env(worker_cls)
        connection = env.connect("dlq")
        try:
            for delivery in _take(connection, dead_letter_queue_name(env.queue), limit):
                entry = _describe_dead_letter(delivery)
                if as_json:
                    click.echo(json.dumps(entry))
                else:
                    click.echo(
                        f"{entry['id']}\t{entry['error_type']}\tattempts={entry['attempts']}\t"
                        f"{entry['failed_at']}\t{entry['error_message']}"
                    )
            connection.release_unacked()
        except BrokerUnavailable as error:
            _fail(str(error), code=1)
        finally:
            connection.close()

    @dlq.command("replay", short_help="Move dead letters back to the queue, attempts reset.")
    @click.option(
        "--id", "ids", multiple=True, help="Replay only this task id (repeatable). Default: all."
    )
    def dlq_replay(ids: tuple[str, ...]) -> None:
        """Move dead letters back to the main queue with attempts reset; print their ids.

        Each copy is confirmed by the broker before its dead letter is removed.
        """
        env = _Env(worker_cls)
        connection = env.connect("dlq")
        dlq_name = dead_letter_queue_name(env.queue)
        reporter = make_reporter(env.settings)
        replayed = 0
        try:
            for delivery in _take(connection, dlq_name, connection.message_count(dlq_name) or 0):
                message = normalise(delivery)
                task_id = task_id_from(message.body, message.message_id)
                if ids and task_id not in ids:
                    continue
                try:
                    connection.publish(env.queue, replay_message(message))
                except UnencodableMessage as error:
                    # Left in the dead-letter queue (released below); the others go on.
                    click.echo(f"skipped {task_id}: {error}", err=True)
                    continue
                connection.ack(delivery)
                replayed += 1
                click.echo(task_id)
                reporter.report(env.queued(task_id))
            connection.release_unacked()
        except (BrokerUnavailable, PublishFailed) as error:
            _fail(str(error), code=1)
        finally:
            connection.close()
            reporter.close(REPORTER_CLOSE_TIMEOUT_S)
        click.echo(f"replayed {replayed} dead letters to {env.queue}", err=True)

    @dlq.command("purge")
    @click.confirmation_option(prompt="Delete every dead letter for good?")
    def dlq_purge() -> None:
        """Delete every dead letter; print how many."""
        env = _Env(worker_cls)
        connection = env.connect("dlq")
        try:
            purged = connection.purge(dead_letter_queue_name(env.queue))
        except BrokerUnavailable as error:
            _fail(str(error), code=1)
        finally:
            connection.close()
        click.echo(f"purged {purged} dead letters")

    @cli.command(short_help="Exit 0 if the broker is reachable and the queue exists.")
    def healthcheck() -> None:
        """Exit 0 when the broker is reachable and the queue exists, else 1."""
        env = _Env(worker_cls)
        connection = env.connect("healthcheck")
        try:
            exists = connection.queue_exists(env.queue)
        except BrokerUnavailable as error:
            _fail(str(error), code=1)
        finally:
            connection.close()
        if not exists:
            _fail(f"queue {env.queue!r} does not exist", code=1)
        click.echo(f"ok: broker reachable, queue {env.queue!r} exists")

    return cli


def _take(connection: BrokerConnection, queue: str, limit: int) -> Iterator[Delivery]:
    for _ in range(limit):
        delivery = connection.get(queue)
        if delivery is None:
            return
        yield delivery


#: ``dlq list`` shows at most this much of one header: a dead letter is anyone's text.
MAX_LISTED_CHARS = 1000


def _header_text(value: Any) -> str:
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    # One line per dead letter, whatever the producer or an old worker put in the header.
    return " ".join(text[:MAX_LISTED_CHARS].split())


def _describe_dead_letter(delivery: Delivery) -> dict[str, Any]:
    message = normalise(delivery)
    headers = message.headers
    entry = {
        "id": " ".join(task_id_from(message.body, message.message_id).split()),
        "error_type": _header_text(headers.get(ERROR_TYPE_HEADER, "")),
        "error_message": _header_text(headers.get(ERROR_MESSAGE_HEADER, "")),
        "attempts": message.attempt,
        "failed_at": _header_text(headers.get(FAILED_AT_HEADER, "")),
    }
    dropped = headers.get(DROPPED_HEADERS_HEADER)
    if dropped:
        entry["dropped_headers"] = _header_text(dropped)
    return entry


def run_worker(worker_cls: type[BaseWorker[Any, Any]]) -> None:
    """Run the command line for ``worker_cls`` (the whole ``main()`` of a worker app)."""
    build_cli(worker_cls)(
        prog_name=worker_cls.default_queue if hasattr(worker_cls, "default_queue") else None
    )
