"""``<worker> dlq list|replay|purge``: inspect, replay or purge the dead-letter queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from worker_framework.command_context import WorkerApp, pass_app
from worker_framework.errors import UnencodableMessage

if TYPE_CHECKING:
    from worker_framework.broker import BrokerConnection, Delivery

#: ``dlq list`` shows at most this much of one header: a dead letter is anyone's text.
MAX_LISTED_CHARS = 1000


@click.group(short_help="Inspect, replay or purge the dead-letter queue.")
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
@pass_app
def dlq_list(app: WorkerApp, limit: int, as_json: bool) -> None:
    """Show dead letters (id, error type, attempts, failed-at, message); removes nothing."""
    from worker_framework.retry_policy import dead_letter_queue_name

    with app.broker("dlq") as connection:
        for delivery in _take(connection, dead_letter_queue_name(app.queue), limit):
            entry = _describe_dead_letter(delivery)
            if as_json:
                click.echo(json.dumps(entry))
            else:
                click.echo(
                    f"{entry['id']}\t{entry['error_type']}\tattempts={entry['attempts']}\t"
                    f"{entry['failed_at']}\t{entry['error_message']}"
                )
        connection.release_unacked()


@dlq.command("replay", short_help="Move dead letters back to the queue, attempts reset.")
@click.option(
    "--id", "ids", multiple=True, help="Replay only this task id (repeatable). Default: all."
)
@pass_app
def dlq_replay(app: WorkerApp, ids: tuple[str, ...]) -> None:
    """Move dead letters back to the main queue with attempts reset; print their ids.

    Each copy keeps its task's ``traceparent`` (the replay continues the task's trace) and is
    confirmed by the broker before its dead letter is removed.
    """
    from worker_framework.inbound import normalise
    from worker_framework.outcomes import replay_message
    from worker_framework.retry_policy import dead_letter_queue_name
    from worker_framework.task_runner import task_id_from

    replayed = 0
    with app.broker("dlq") as connection, app.reporter() as reporter:
        dlq_name = dead_letter_queue_name(app.queue)
        for delivery in _take(connection, dlq_name, connection.message_count(dlq_name) or 0):
            message = normalise(delivery)
            task_id = task_id_from(message.body, message.message_id)
            if ids and task_id not in ids:
                continue
            try:
                connection.publish(app.queue, replay_message(message))
            except UnencodableMessage as error:
                # Left in the dead-letter queue (released below); the others go on.
                click.echo(f"skipped {task_id}: {error}", err=True)
                continue
            connection.ack(delivery)
            replayed += 1
            click.echo(task_id)
            reporter.report(app.queued(task_id, message.trace and message.trace.trace_id))
        connection.release_unacked()
    click.echo(f"replayed {replayed} dead letters to {app.queue}", err=True)


@dlq.command("purge")
@click.confirmation_option(prompt="Delete every dead letter for good?")
@pass_app
def dlq_purge(app: WorkerApp) -> None:
    """Delete every dead letter; print how many."""
    from worker_framework.retry_policy import dead_letter_queue_name

    with app.broker("dlq") as connection:
        purged = connection.purge(dead_letter_queue_name(app.queue))
    click.echo(f"purged {purged} dead letters")


def _take(connection: BrokerConnection, queue: str, limit: int) -> Iterator[Delivery]:
    for _ in range(limit):
        delivery = connection.get(queue)
        if delivery is None:
            return
        yield delivery


def _header_text(value: Any) -> str:
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    # One line per dead letter, whatever the producer or an old worker put in the header.
    return " ".join(text[:MAX_LISTED_CHARS].split())


def _describe_dead_letter(delivery: Delivery) -> dict[str, Any]:
    from worker_framework.inbound import DROPPED_HEADERS_HEADER, normalise
    from worker_framework.outcomes import (
        ERROR_MESSAGE_HEADER,
        ERROR_TYPE_HEADER,
        FAILED_AT_HEADER,
    )
    from worker_framework.task_runner import task_id_from

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
