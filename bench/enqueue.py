"""Publishing many tasks with publisher confirms: one round trip each against a pipeline.

    python bench/enqueue.py --messages 20000 --rounds 3

Each round publishes the same ``--messages`` persistent tasks (the messages ``enqueue`` builds)
to fresh durable queues, three ways, alternating, each checked afterwards (the queue must hold
every message, and nothing may be reported unconfirmed):

- ``one_by_one``: ``BrokerConnection.publish`` in a loop, waiting for each confirm: what
  ``enqueue`` did before the pipeline.
- ``pipelined``: ``BrokerConnection.publish_many`` (up to 1000 confirms in flight, each checked).
- ``cli``: the real ``enqueue FILE`` command of a no-op worker, in its own process, reading the
  same tasks as JSON lines and printing their ids; wall time including the process start-up.
- ``raw_pika_confirm_each``: a bare ``BlockingChannel`` in confirm mode publishing one message
  at a time, for reference.

Medians of the rounds; the last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pika
from pydantic import BaseModel
from shared_utils.child_process import inherited_pythonpath
from worker_framework import BaseWorker, TaskContext, run_worker
from worker_framework.broker import BrokerConnection, OutgoingMessage
from worker_framework.settings import WorkerSettings, load_settings
from worker_framework.testing import QueueClient, wait_for

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


class NoopTask(BaseModel):
    """A task that asks for nothing."""

    id: str


class NoopWorker(BaseWorker[NoopTask, NoopTask]):
    """A worker whose command line the ``cli`` figure runs."""

    default_queue = "bench-enqueue"

    def worker_type(self) -> str:
        """Logs say ``noop``."""
        return "noop"

    def execute_task(self, task: NoopTask, ctx: TaskContext) -> NoopTask:
        """Never called here: the benchmark only enqueues."""
        return task


def tasks(count: int) -> list[OutgoingMessage]:
    """The messages ``enqueue`` publishes for ``count`` tasks."""
    return [
        OutgoingMessage(json.dumps({"id": f"t{n}"}).encode(), {"x-attempt": 1}, message_id=f"t{n}")
        for n in range(count)
    ]


def one_by_one(url: str, queue: str, messages: list[OutgoingMessage]) -> None:
    """One confirm round trip per message."""
    connection = BrokerConnection.connect([url])
    try:
        for message in messages:
            connection.publish(queue, message)
    finally:
        connection.close()


def pipelined(url: str, queue: str, messages: list[OutgoingMessage]) -> None:
    """Many confirms in flight; every message confirmed or reported."""
    connection = BrokerConnection.connect([url])
    try:
        failures = connection.publish_many(queue, messages)
    finally:
        connection.close()
    if failures:
        raise SystemExit(f"pipelined: {len(failures)} messages not confirmed, e.g. {failures}")


def raw_confirm_each(url: str, queue: str, messages: list[OutgoingMessage]) -> None:
    """A bare pika channel in confirm mode, one message at a time."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    for message in messages:
        properties = pika.BasicProperties(
            delivery_mode=2,
            content_type="application/json",
            message_id=message.message_id,
            headers=dict(message.headers),
        )
        channel.basic_publish("", queue, message.body, properties, mandatory=True)
    connection.close()


def cli(url: str, queue: str, messages: list[OutgoingMessage], workdir: Path) -> None:
    """The ``enqueue`` command in its own process, from a file of JSON lines."""
    source = workdir / f"{queue}.jsonl"
    source.write_bytes(b"\n".join(message.body for message in messages) + b"\n")
    env = dict(
        os.environ,
        PYTHONPATH=inherited_pythonpath(),
        AMQP_URL=url,
        WORKER_QUEUE=queue,
        LOG_LEVEL="WARNING",
    )
    env.pop("GRAPHQL_URL", None)
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--role", "cli", "enqueue", str(source)],
        env=env,
        capture_output=True,
        check=False,
    )
    printed = done.stdout.split()
    if done.returncode != 0 or len(printed) != len(messages):
        raise SystemExit(f"cli: exit {done.returncode}, {len(printed)} ids: {done.stderr[-500:]!r}")


def timed(
    url: str, publish: Callable[[str, str, list[OutgoingMessage]], None], count: int
) -> float:
    """Messages per second of ``publish`` into a fresh queue, checked and cleaned up."""
    queue = f"bench-enqueue-{uuid.uuid4().hex[:8]}"
    messages = tasks(count)
    with QueueClient(url) as client:
        client.declare_reply_queue(queue)
        try:
            started = time.perf_counter()
            publish(url, queue, messages)
            seconds = time.perf_counter() - started
            # Confirmed means stored: the queue must hold every message already.
            wait_for(lambda: client.message_count(queue) == count, 10, message=f"{count} stored")
        finally:
            client.delete_queue(queue)
            client.delete_worker_queues(
                load_settings(WorkerSettings, amqp_url=url, worker_queue=queue)
            )
    return count / seconds


def main() -> None:
    """Parse arguments and run the benchmark (or the worker command line, ``--role cli``)."""
    if sys.argv[1:3] == ["--role", "cli"]:
        sys.argv[1:3] = []
        run_worker(NoopWorker)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000, help="tasks per way (20000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", DEFAULT_AMQP_URL))
    args = parser.parse_args()
    if args.messages < 1 or args.rounds < 1:
        parser.error("--messages and --rounds must be positive")
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-enqueue-") as tmp:
        ways: dict[str, Callable[[str, str, list[OutgoingMessage]], None]] = {
            "one_by_one": one_by_one,
            "pipelined": pipelined,
            "cli": lambda url, queue, messages: cli(url, queue, messages, Path(tmp)),
            "raw_pika_confirm_each": raw_confirm_each,
        }
        for round_number in range(1, args.rounds + 1):
            for name, publish in ways.items():
                rates.setdefault(name, []).append(timed(args.amqp_url, publish, args.messages))
            line = ", ".join(f"{name} {values[-1]:.0f}" for name, values in rates.items())
            print(f"round {round_number} (msg/s): {line}", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    figures: dict[str, object] = {"messages": args.messages, "rounds": args.rounds}
    figures.update({f"{name}_msgs_per_s": round(rate, 1) for name, rate in medians.items()})
    figures["pipelined_vs_one_by_one"] = round(medians["pipelined"] / medians["one_by_one"], 2)
    figures["cli_vs_one_by_one"] = round(medians["cli"] / medians["one_by_one"], 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
