"""Horizontal scaling: 1, 2 and 4 worker processes on one queue, classic and quorum.

    python bench/scale_out.py --messages 6000 --task-ms 0

Each round declares a fresh queue of the given type (the framework's own topology, as
``WORKER_QUEUE_TYPE`` selects), preloads it with ``--messages`` persistent tasks, and starts
``N`` framework worker processes on it (forked from this one, each with its own connection, the
real ``Consumer``, and a task that sleeps ``--task-ms``). The clock runs from the first task
started in any process to the last one acknowledged; the processes share a counter, so the
round ends the moment every task is done. Every round prints one JSON line; the last line sums
them up (msgs/s by queue type and worker count, and the speed-up over one worker).

``--cluster`` runs the same against a 3-node cluster started on this machine (the fixture of
``tests/cluster``: needs root and ``rabbitmq-server``), worker ``i`` attached to node ``i % 3``.

With ``--task-ms 0`` the figures show where the broker (one node, on the same cores as the
workers) becomes the limit; with a task that takes time, how close each replica comes to
adding ``WORKER_CONCURRENCY * 1000 / task_ms`` msgs/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import time
import uuid
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import pika
from cluster.rabbitmq_cluster import RabbitCluster
from pydantic import BaseModel
from worker_framework import (
    BaseWorker,
    ProgressReporter,
    ProgressUpdate,
    TaskContext,
    TaskStatus,
)
from worker_framework.consumer import Consumer
from worker_framework.logging import configure_logging
from worker_framework.settings import WorkerSettings, load_settings
from worker_framework.shutdown import SignalHandlers
from worker_framework.testing import QueueClient, wait_for
from worker_framework.topology import connect, declare_topology

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
WORKER_COUNTS = (1, 2, 4)
QUEUE_TYPES = ("classic", "quorum")


class SleepTask(BaseModel):
    """A task that takes ``work_ms``."""

    id: str
    work_ms: int = 0


class SleepResult(BaseModel):
    """The id back."""

    id: str


class SleepWorker(BaseWorker[SleepTask, SleepResult]):
    """Sleeps for the task's ``work_ms`` (0: the framework's own cost alone)."""

    default_queue = "bench-scale-out"

    def worker_type(self) -> str:
        """Logs say ``sleep``."""
        return "sleep"

    def execute_task(self, task: SleepTask, ctx: TaskContext) -> SleepResult:
        """Sleep, then return."""
        if task.work_ms:
            time.sleep(task.work_ms / 1000)
        return SleepResult(id=task.id)


class SharedTally:
    """Counters shared by the forked workers: tasks done, first start, last completion."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self.done: Synchronized[int] = context.Value("q", 0)
        self.first: Synchronized[float] = context.Value("d", 0.0)
        self.last: Synchronized[float] = context.Value("d", 0.0)


class TallyReporter(ProgressReporter):
    """Counts completions into the shared tally (reported after the ack)."""

    def __init__(self, tally: SharedTally) -> None:
        self._tally = tally

    def report(self, update: ProgressUpdate) -> None:
        """Stamp the first start and every completion."""
        now = time.monotonic()  # system-wide on Linux: comparable between processes
        if update.status is TaskStatus.PROCESSING and not self._tally.first.value:
            with self._tally.first.get_lock():
                if not self._tally.first.value:
                    self._tally.first.value = now
        elif update.status is TaskStatus.COMPLETED:
            with self._tally.done.get_lock():
                self._tally.done.value += 1
                self._tally.last.value = now

    def close(self, timeout_s: float) -> None:
        """Nothing buffered."""


def serve(settings: WorkerSettings, tally: SharedTally) -> None:
    """One worker process: consume until SIGTERM."""
    configure_logging(settings)
    consumer = Consumer(SleepWorker(settings), settings, TallyReporter(tally))
    SignalHandlers(consumer.request_stop).install()
    consumer.run()


def preload(url: str, queue: str, messages: int, work_ms: int) -> None:
    """Publish ``messages`` persistent tasks (confirmed) to the declared ``queue``."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    for number in range(messages):
        task_id = f"t{number}"
        channel.basic_publish(
            "",
            queue,
            json.dumps({"id": task_id, "work_ms": work_ms}).encode(),
            pika.BasicProperties(
                delivery_mode=2,
                content_type="application/json",
                message_id=task_id,
                headers={"x-attempt": 1},
            ),
        )
    connection.close()


def run_round(
    args: argparse.Namespace, queue_type: str, workers: int, cluster: RabbitCluster | None
) -> dict[str, Any]:
    """One queue, ``workers`` processes, every task done: the round's figures."""
    settings = load_settings(
        WorkerSettings,
        amqp_url=args.amqp_url,
        worker_queue=f"bench-scale-{uuid.uuid4().hex[:8]}",
        worker_queue_type=queue_type,
        worker_prefetch=args.prefetch,
        log_level=args.log_level,
    )
    queue = settings.worker_queue
    assert queue is not None
    connection = connect(settings)
    declare_topology(connection, queue, settings)
    connection.close()
    preload(args.amqp_url.split(",")[0], queue, args.messages, args.task_ms)
    tally = SharedTally()
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(
            target=serve,
            # On a cluster each worker starts at a different node of AMQP_URL.
            args=(
                (
                    settings.model_copy(update={"amqp_url": cluster.urls(number % 3)})
                    if cluster
                    else settings
                ),
                tally,
            ),
        )
        for number in range(workers)
    ]
    try:
        for process in processes:
            process.start()
        wait_for(
            lambda: tally.done.value >= args.messages,
            timeout=args.timeout,
            interval=0.02,
            message=f"{args.messages} tasks done",
        )
        seconds = tally.last.value - tally.first.value
    finally:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(30)
        with QueueClient(args.amqp_url) as client:
            left = client.message_count(queue)
            client.delete_worker_queues(settings)
    if left:
        raise SystemExit(f"{left} tasks left in {queue}: some were not acknowledged")
    return {
        "queue_type": queue_type,
        "workers": workers,
        "messages": args.messages,
        "task_ms": args.task_ms,
        "prefetch": args.prefetch,
        "broker_nodes": 3 if cluster else 1,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(args.messages / seconds, 1),
    }


def main() -> None:
    """Parse arguments, run every round, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=6000, help="tasks per round")
    parser.add_argument("--task-ms", type=int, default=0, help="how long each task sleeps")
    parser.add_argument("--prefetch", type=int, default=10, help="WORKER_PREFETCH (default 10)")
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", DEFAULT_AMQP_URL))
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the workers")
    parser.add_argument("--timeout", type=float, default=600, help="give up on a round after")
    parser.add_argument(
        "--cluster", action="store_true", help="run against a 3-node cluster started here"
    )
    args = parser.parse_args()
    if args.messages < 1 or args.task_ms < 0 or args.prefetch < 1:
        parser.error("--messages and --prefetch must be positive, --task-ms not negative")

    summary: dict[str, dict[str, float]] = {}
    with RabbitCluster() if args.cluster else contextlib.nullcontext() as cluster:
        if cluster:
            args.amqp_url = cluster.urls()
        for queue_type in QUEUE_TYPES:
            rates = summary.setdefault(queue_type, {})
            for workers in WORKER_COUNTS:
                figures = run_round(args, queue_type, workers, cluster)
                rates[str(workers)] = figures["msgs_per_s"]
                print(json.dumps(figures), flush=True)
    speedup = {
        queue_type: {n: round(rate / rates["1"], 2) for n, rate in rates.items()}
        for queue_type, rates in summary.items()
    }
    print(
        json.dumps(
            {
                "messages": args.messages,
                "task_ms": args.task_ms,
                "prefetch": args.prefetch,
                "broker_nodes": 3 if args.cluster else 1,
                "msgs_per_s": summary,
                "speedup_over_one_worker": speedup,
            }
        )
    )


if __name__ == "__main__":
    main()
