"""Latency over a paced stream, and I/O-bound tasks: framework worker against raw pika.

    python bench/consumers.py latency --messages 5000 --rate 500 --prefetch 10
    python bench/consumers.py io-bound --messages 2000 --task-ms 5 --concurrency 8

Each round starts a consumer in its own process on a fresh durable queue, the framework's
(``Consumer``, as ``run`` uses it) and a raw pika one alternately, with the same prefetch.

``latency``: a publisher in its own process sends ``--messages`` no-op tasks at ``--rate`` a
second (persistent, no confirms, as a producer would); each task's id carries its send time
(``CLOCK_MONOTONIC``, shared by the processes of one machine). Publish-to-handler is taken
when the task starts (the framework's ``execute_task``, the raw callback), publish-to-ack when
its ack has been handed to the connection (the framework reports the final status right
after the ack; the raw consumer times after ``basic_ack``, which writes at once).

``io-bound``: the queue is preloaded with ``--messages`` tasks that each wait ``--task-ms`` (a
stand-in for an HTTP call); the framework runs them at ``WORKER_CONCURRENCY=--concurrency``,
the raw consumer on a thread pool of the same size, acking through
``add_callback_threadsafe`` as pika's threaded example does. Figures: tasks/s, against the
ideal (concurrency / task time) and against raw pika.

Medians over ``--rounds``; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pika
from pydantic import BaseModel
from shared_utils.child_process import inherited_pythonpath
from worker_framework import BaseWorker, ProgressReporter, ProgressUpdate, TaskContext, TaskStatus
from worker_framework.consumer import Consumer
from worker_framework.logging import configure_logging
from worker_framework.settings import WorkerSettings, load_settings
from worker_framework.shutdown import SignalHandlers
from worker_framework.testing import QueueClient, wait_for

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


class Task(BaseModel):
    """``id`` is ``<sequence>-<send time in ns>``; the task waits ``wait_ms``."""

    id: str
    wait_ms: float = 0.0


class Recorder:
    """Collects per-task times in one process and writes them once ``expected`` are done."""

    def __init__(self, expected: int, result_file: Path) -> None:
        self.expected = expected
        self.result_file = result_file
        self.handler_ns: list[int] = []
        self.ack_ns: list[int] = []
        self.first: float | None = None

    def started(self, task_id: str) -> None:
        """A task's handler began."""
        if self.first is None:
            self.first = time.perf_counter()
        self.handler_ns.append(time.monotonic_ns() - sent_ns(task_id))

    def acked(self, task_id: str) -> None:
        """A task's ack was handed to the connection; the last one writes the result."""
        self.ack_ns.append(time.monotonic_ns() - sent_ns(task_id))
        if len(self.ack_ns) == self.expected:
            seconds = time.perf_counter() - (self.first or 0.0)
            result = {"handler_ns": self.handler_ns, "ack_ns": self.ack_ns, "seconds": seconds}
            partial = self.result_file.with_suffix(".partial")
            partial.write_text(json.dumps(result))
            os.replace(partial, self.result_file)


def sent_ns(task_id: str) -> int:
    """The send time carried in a task id."""
    return int(task_id.rsplit("-", 1)[1])


class BenchWorker(BaseWorker[Task, Task]):
    """Waits ``wait_ms`` and records when each task started."""

    default_queue = "bench-consumers"
    recorder: Recorder

    def worker_type(self) -> str:
        """Logs say ``bench``."""
        return "bench"

    def execute_task(self, task: Task, ctx: TaskContext) -> Task:
        """Record the start, then wait like an HTTP call would."""
        self.recorder.started(task.id)
        if task.wait_ms:
            time.sleep(task.wait_ms / 1000)
        return task


class AckReporter(ProgressReporter):
    """Records the final status, which the consumer reports right after the ack."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def report(self, update: ProgressUpdate) -> None:
        """Only COMPLETED matters here."""
        if update.status is TaskStatus.COMPLETED:
            self.recorder.acked(update.task_id)

    def close(self, timeout_s: float) -> None:
        """Nothing buffered."""


def serve_framework(args: argparse.Namespace) -> None:
    """The framework worker process."""
    settings = load_settings(
        WorkerSettings,
        worker_queue=args.queue,
        worker_prefetch=args.prefetch,
        worker_concurrency=args.concurrency,
    )
    configure_logging(settings)
    recorder = Recorder(args.messages, args.result_file)
    worker = BenchWorker(settings)
    worker.recorder = recorder
    consumer = Consumer(worker, settings, AckReporter(recorder))
    SignalHandlers(consumer.request_stop).install()
    consumer.run()


def serve_raw(args: argparse.Namespace) -> None:
    """The raw pika process: inline when the task does not wait, else on a thread pool."""
    recorder = Recorder(args.messages, args.result_file)
    connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=args.prefetch)
    pool = ThreadPoolExecutor(args.concurrency)

    def ack(tag: int, task_id: str) -> None:
        channel.basic_ack(tag)
        recorder.acked(task_id)

    def work(tag: int, task: dict[str, Any]) -> None:
        recorder.started(task["id"])
        time.sleep(task["wait_ms"] / 1000)
        connection.add_callback_threadsafe(functools.partial(ack, tag, task["id"]))

    def on_message(_ch: Any, method: Any, _properties: Any, body: bytes) -> None:
        task = json.loads(body)
        if task.get("wait_ms"):
            pool.submit(work, method.delivery_tag, task)
            return
        recorder.started(task["id"])
        ack(method.delivery_tag, task["id"])

    channel.basic_consume(args.queue, on_message)
    while len(recorder.ack_ns) < args.messages:
        connection.process_data_events(time_limit=0.2)
    pool.shutdown()
    connection.close()


def publish(args: argparse.Namespace) -> None:
    """The paced publisher process (``--rate`` a second; 0: as fast as it can)."""
    connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    channel = connection.channel()
    properties = pika.BasicProperties(
        delivery_mode=2, content_type="application/json", headers={"x-attempt": 1}
    )
    started = time.monotonic()
    for number in range(args.messages):
        if args.rate:
            # Pacing the stream, not waiting for a condition: the publisher keeps its schedule.
            delay = started + number / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        body = {"id": f"{number}-{time.monotonic_ns()}", "wait_ms": args.task_ms}
        channel.basic_publish("", args.queue, json.dumps(body).encode(), properties)
    connection.close()


def spawn(role: str, args: argparse.Namespace, queue: str, result: Path, log: Path) -> Any:
    """This script in ``role`` as a subprocess seeing the same modules; output to ``log``."""
    env = dict(os.environ, PYTHONPATH=inherited_pythonpath(), AMQP_URL=args.amqp_url)
    env["LOG_LEVEL"] = "WARNING"
    command = [sys.executable, os.path.abspath(__file__), args.mode, "--role", role]
    command += ["--queue", queue, "--result-file", str(result), "--amqp-url", args.amqp_url]
    for option in ("messages", "rate", "prefetch", "concurrency", "task_ms"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    with log.open("ab") as output:
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def measure(role: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One consumer of ``role`` on a fresh queue; its recorded times."""
    queue = f"bench-{args.mode}-{role}-{uuid.uuid4().hex[:8]}"
    result = workdir / f"{queue}.json"
    log = workdir / f"{queue}.log"
    with QueueClient(args.amqp_url) as client:
        client.declare_reply_queue(queue)
        if args.mode == "io-bound":  # preloaded: the consumer starts with a full queue
            publisher = spawn("publish", args, queue, result, log)
            publisher.wait(args.timeout)
            wait_for(lambda: client.message_count(queue) == args.messages, args.timeout)
        consumer = spawn(role, args, queue, result, log)
        try:
            wait_for(lambda: client.consumer_count(queue) == 1, args.timeout)
            if args.mode == "latency":
                spawn("publish", args, queue, result, log).wait(args.timeout)
            wait_for(result.exists, args.timeout, message=f"{role} consumer to finish")
        finally:
            if consumer.poll() is None:
                consumer.send_signal(signal.SIGTERM)
            consumer.wait(30)
            left = client.message_count(queue)
            client.delete_worker_queues(
                load_settings(WorkerSettings, amqp_url=args.amqp_url, worker_queue=queue)
            )
            client.delete_queue(queue)
    if left:
        raise SystemExit(f"{role} consumer left {left} messages unacknowledged")
    recorded: dict[str, Any] = json.loads(result.read_text())
    return recorded


def percentiles(values_ns: list[int]) -> dict[str, float]:
    """p50, p95 and p99 in milliseconds."""
    cuts = statistics.quantiles(values_ns, n=100, method="inclusive")
    return {f"p{p}": round(cuts[p - 1] / 1e6, 3) for p in (50, 95, 99)}


def summarise(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The figures of all rounds: medians per consumer, same-run comparisons."""
    figures: dict[str, Any] = {"mode": args.mode, "messages": args.messages}
    figures.update(prefetch=args.prefetch, rounds=args.rounds)
    if args.mode == "latency":
        figures["rate"] = args.rate
        for role, recorded in runs.items():
            for kind in ("handler", "ack"):
                per_round = [percentiles(run[f"{kind}_ns"]) for run in recorded]
                for p in ("p50", "p95", "p99"):
                    figures[f"{role}_{kind}_{p}_ms"] = statistics.median(r[p] for r in per_round)
        return figures
    figures.update(concurrency=args.concurrency, task_ms=args.task_ms)
    ideal = args.concurrency / (args.task_ms / 1000)
    rates = {
        role: statistics.median(args.messages / r["seconds"] for r in v) for role, v in runs.items()
    }
    figures["ideal_msgs_per_s"] = round(ideal, 1)
    for role, rate in rates.items():
        figures[f"{role}_msgs_per_s"] = round(rate, 1)
        figures[f"{role}_of_ideal"] = round(rate / ideal, 3)
    figures["ratio"] = round(rates["framework"] / rates["raw"], 3)
    return figures


def main() -> None:
    """Parse arguments and run the benchmark (or one of its processes)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["latency", "io-bound"])
    parser.add_argument("--messages", type=int, default=5000, help="tasks per round (5000)")
    parser.add_argument("--rate", type=float, default=500, help="latency: msg/s sent (500)")
    parser.add_argument("--prefetch", type=int, default=10, help="prefetch of both (10)")
    parser.add_argument("--concurrency", type=int, default=1, help="task threads (1)")
    parser.add_argument("--task-ms", type=float, default=0.0, help="how long a task waits")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", DEFAULT_AMQP_URL))
    parser.add_argument("--timeout", type=float, default=600, help="seconds per phase")
    parser.add_argument("--role", default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "io-bound":
        args.rate = 0
        args.task_ms = args.task_ms or 5.0
    roles = {"framework": serve_framework, "raw": serve_raw, "publish": publish}
    if args.role in roles:
        roles[args.role](args)
        return
    runs: dict[str, list[dict[str, Any]]] = {"framework": [], "raw": []}
    with tempfile.TemporaryDirectory(prefix="bench-consumers-") as tmp:
        for round_number in range(1, args.rounds + 1):
            # Alternate which goes first: a shared machine drifts during a run.
            order = ["raw", "framework"] if round_number % 2 else ["framework", "raw"]
            for role in order:
                runs[role].append(measure(role, args, Path(tmp)))
            print(f"round {round_number} done", file=sys.stderr)
    print(json.dumps(summarise(args, runs)))


if __name__ == "__main__":
    main()
