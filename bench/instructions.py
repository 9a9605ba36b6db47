"""Instructions per message, per thread, of the framework's consumer against raw pika.

    python bench/instructions.py --prefetch 10            # needs valgrind on PATH

A noise-free companion to ``throughput.py``: instruction counts do not depend on what else the
machine runs. Each consumer drains a preloaded queue in a process run under
``valgrind --tool=callgrind --separate-threads=yes``, once with ``--small`` and once with
``--large`` messages; instructions per message = (count for large - count for small) /
(large - small), which cancels start-up, imports and shutdown. The framework side is the real
consuming path with the defaults of a worker without ``GRAPHQL_URL`` (the ``LogReporter``,
``LOG_LEVEL=INFO``, metrics off), ``WORKER_CONCURRENCY=1``, a no-op task; it stops once its
metrics recorder has seen every task settled. The raw side acks each message in its callback.

Callgrind runs the threads one at a time, so how deliveries batch differs from a real run:
compare the two consumers of one run, not these counts with wall-clock rates.

The last line printed is one JSON object: thousands of instructions per message, by thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pika
from shared_utils.child_process import inherited_pythonpath
from throughput import DEFAULT_AMQP_URL, NoopWorker, preload
from worker_framework.consumer import Consumer
from worker_framework.logging import configure_logging
from worker_framework.metrics import WorkerMetrics
from worker_framework.outcomes import Outcome
from worker_framework.progress import LogReporter
from worker_framework.settings import WorkerSettings, load_settings
from worker_framework.task_threads import Job
from worker_framework.testing import QueueClient


class StopAfter(WorkerMetrics):
    """Counts settled tasks and stops the consumer after ``expected`` of them."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.settled = 0
        self.consumer: Consumer | None = None

    def task_settled(self, job: Job, outcome: Outcome) -> None:
        """One more task acknowledged; stop at the last."""
        self.settled += 1
        if self.settled == self.expected and self.consumer is not None:
            self.consumer.request_stop()


def consume_framework(url: str, queue: str, prefetch: int, expected: int) -> None:
    """The framework's consumer with a worker's defaults, until ``expected`` tasks are settled."""
    settings = load_settings(
        WorkerSettings,
        amqp_url=url,
        worker_queue=queue,
        worker_prefetch=prefetch,
        worker_concurrency=1,
        log_level="INFO",
    )
    configure_logging(settings)
    metrics = StopAfter(expected)
    consumer = Consumer(NoopWorker(settings), settings, LogReporter(), metrics=metrics)
    metrics.consumer = consumer
    consumer.run()


def consume_raw(url: str, queue: str, prefetch: int, expected: int) -> None:
    """A minimal pika consumer acking each message in its callback, until ``expected``."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    count = [0]

    def on_message(ch: Any, method: Any, _properties: Any, _body: bytes) -> None:
        ch.basic_ack(method.delivery_tag)
        count[0] += 1
        if count[0] == expected:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    connection.close()


def thread_counts(out_prefix: Path) -> list[int]:
    """Instructions of each thread (main thread first) from callgrind's per-thread files."""
    counts = []
    for path in sorted(out_prefix.parent.glob(out_prefix.name + "-*")):
        for line in path.read_text().splitlines():
            if line.startswith(("totals:", "summary:")):
                counts.append(int(line.split()[1]))
                break
    return counts


def count(role: str, args: argparse.Namespace, messages: int, workdir: Path) -> list[int]:
    """Instructions per thread of one consumer draining ``messages`` under callgrind."""
    queue = f"bench-instr-{role}-{uuid.uuid4().hex[:8]}"
    preload(args.amqp_url, queue, messages)
    out_prefix = workdir / f"{queue}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        f"--callgrind-out-file={out_prefix}",
        sys.executable,
        os.path.abspath(__file__),
        "--role",
        role,
        "--queue",
        queue,
        "--messages",
        str(messages),
        "--prefetch",
        str(args.prefetch),
        "--amqp-url",
        args.amqp_url,
    ]
    env = dict(os.environ, PYTHONPATH=inherited_pythonpath())
    try:
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=args.timeout)
    finally:
        with QueueClient(args.amqp_url) as client:
            left = client.message_count(queue)
            client.delete_queue(queue)
    if left:
        raise SystemExit(f"{role} consumer left {left} messages unacknowledged")
    return thread_counts(out_prefix)


def per_message(role: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """Thousands of instructions per message: the main (I/O) thread, the others, the total."""
    small = count(role, args, args.small, workdir)
    large = count(role, args, args.large, workdir)
    if len(small) != len(large):
        raise SystemExit(f"{role}: thread counts differ ({len(small)} vs {len(large)})")
    span = args.large - args.small
    main_thread = (large[0] - small[0]) / span / 1000
    others = (sum(large[1:]) - sum(small[1:])) / span / 1000
    return {
        "io_thread_k": round(main_thread, 1),
        "task_threads_k": round(others, 1),
        "total_k": round(main_thread + others, 1),
    }


def main() -> None:
    """Parse arguments and count (or run one consumer role under callgrind)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefetch", type=int, default=10, help="prefetch (default 10)")
    parser.add_argument("--small", type=int, default=1000, help="messages of the short drain")
    parser.add_argument("--large", type=int, default=5000, help="messages of the long drain")
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", DEFAULT_AMQP_URL))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per drain")
    parser.add_argument("--role", choices=["bench", "framework", "raw"], default="bench")
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "framework":
        consume_framework(args.amqp_url, args.queue, args.prefetch, args.messages)
        return
    if args.role == "raw":
        consume_raw(args.amqp_url, args.queue, args.prefetch, args.messages)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as workdir:
        raw = per_message("raw", args, Path(workdir))
        framework = per_message("framework", args, Path(workdir))
    result = {
        "prefetch": args.prefetch,
        "messages": [args.small, args.large],
        "raw_pika": raw,
        "framework": framework,
        "raw_over_framework": round(raw["total_k"] / framework["total_k"], 3),
    }
    print(f"raw pika:  {raw}")
    print(f"framework: {framework}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
