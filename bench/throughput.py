"""Throughput of a framework worker against a minimal raw-pika consumer, plus worker memory.

    python bench/throughput.py --messages 20000 --prefetch 100

Both consumers run in their own process against the same broker, on a durable queue preloaded
with the same persistent messages, with the same prefetch, acknowledging every message
individually. The framework side is the real consuming path (``Consumer``: JSON decoding,
pydantic validation, a worker thread per task, ack after settlement) of a no-op worker; its
progress reporter counts updates so the process can time itself from the first task started to
the last one acknowledged. The raw side times itself from its first delivery to its last ack.
Idle memory is read from a separate fresh worker process that consumes an empty queue.

With ``--metrics`` each round also runs the framework worker with ``WORKER_METRICS_PORT`` set
(the registry live, the endpoint serving); its endpoint is scraped once at the end to check that
it counted every task, and ``metrics_overhead`` = 1 - (with metrics / without) of the medians.
As the rate swings with whatever else the machine runs, the worker's CPU time per message (all
its threads, first task to last) is given too: ``metrics_cpu_overhead`` = 1 - (CPU without /
CPU with).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pika
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from shared_utils.child_process import inherited_pythonpath
from worker_framework import (
    BaseWorker,
    LogReporter,
    ProgressReporter,
    ProgressUpdate,
    TaskContext,
    TaskStatus,
)
from worker_framework.logging import configure_logging
from worker_framework.observability import observed_consumer
from worker_framework.settings import WorkerSettings, load_settings
from worker_framework.shutdown import SignalHandlers
from worker_framework.testing import QueueClient, delete_worker_queues, free_port, wait_for

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


class NoopTask(BaseModel):
    """A task that asks for nothing."""

    id: str


class NoopResult(BaseModel):
    """The echo of a no-op task."""

    id: str


class NoopWorker(BaseWorker[NoopTask, NoopResult]):
    """Does nothing, so the benchmark measures the framework alone."""

    default_queue = "bench-noop"

    def worker_type(self) -> str:
        """Logs say ``noop``."""
        return "noop"

    def execute_task(self, task: NoopTask, ctx: TaskContext) -> NoopResult:
        """Return at once."""
        return NoopResult(id=task.id)


class TimingReporter(ProgressReporter):
    """Counts settled tasks; writes the timing to ``result_file`` after ``expected`` of them."""

    def __init__(self, expected: int, result_file: Path) -> None:
        self._expected = expected
        self._result_file = result_file
        self._log = LogReporter()
        self._lock = threading.Lock()
        self._first: float | None = None
        self._first_cpu = 0.0
        self._first_switches = 0
        self._done = 0

    def wants(self, status: TaskStatus) -> bool:
        """The first start and every completion; else what the log reporter keeps (as a
        worker's default reporter would, so the framework skips building the rest)."""
        return self._first is None or status is TaskStatus.COMPLETED or self._log.wants(status)

    def report(self, update: ProgressUpdate) -> None:
        """Time the first start and the last completion (reported after the ack)."""
        now = time.perf_counter()
        self._log.report(update)
        with self._lock:
            if self._first is None:
                self._first = now
                self._first_cpu = time.process_time()
                self._first_switches = thread_switches()
            if update.status is TaskStatus.COMPLETED:
                self._done += 1
                if self._done == self._expected:
                    write_atomically(
                        self._result_file,
                        json.dumps(
                            {
                                "count": self._done,
                                "seconds": now - self._first,
                                # CPU of the whole process (every thread): steadier than the
                                # rate on a machine shared with other work.
                                "cpu_seconds": time.process_time() - self._first_cpu,
                                "switches": thread_switches() - self._first_switches,
                            }
                        ),
                    )

    def close(self, timeout_s: float) -> None:
        """Nothing buffered."""


def thread_switches() -> int:
    """Voluntary context switches of every thread of this process so far.

    A thread switches voluntarily when it blocks: waiting for the GIL, for a job, or in
    ``epoll``. Each hand-off between the I/O thread and a task thread costs such switches.
    """
    total = 0
    for status in Path("/proc/self/task").glob("*/status"):
        try:
            text = status.read_text()
        except FileNotFoundError:  # a thread that just ended
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def serve_framework(queue: str, prefetch: int, expected: int, result_file: Path) -> None:
    """The framework worker process (``--role framework``)."""
    settings = load_settings(WorkerSettings, worker_queue=queue, worker_prefetch=prefetch)
    configure_logging(settings)
    reporter = TimingReporter(expected, result_file)
    # With WORKER_METRICS_PORT in the environment (``--metrics``), as the ``run`` command does.
    consumer, endpoint = observed_consumer(NoopWorker(settings), settings, reporter)
    if endpoint is not None:
        endpoint.start()
    SignalHandlers(consumer.request_stop).install()
    consumer.run()
    if endpoint is not None:
        endpoint.stop()


def serve_raw(url: str, queue: str, prefetch: int, expected: int, result_file: Path) -> None:
    """The minimal raw-pika consumer process (``--role raw``): ack each message as it comes."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    state: dict[str, Any] = {"first": None, "first_cpu": 0.0, "first_switches": 0, "count": 0}

    def on_message(ch: Any, method: Any, _properties: Any, _body: bytes) -> None:
        if state["first"] is None:
            state["first"] = time.perf_counter()
            state["first_cpu"] = time.process_time()
            state["first_switches"] = thread_switches()
        ch.basic_ack(method.delivery_tag)
        state["count"] += 1
        if state["count"] == expected:
            seconds = time.perf_counter() - state["first"]
            result = {
                "count": expected,
                "seconds": seconds,
                "cpu_seconds": time.process_time() - state["first_cpu"],
                "switches": thread_switches() - state["first_switches"],
            }
            write_atomically(result_file, json.dumps(result))
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    connection.close()


def preload(url: str, queue: str, messages: int) -> None:
    """Fill a fresh durable queue with persistent no-op tasks, as ``enqueue`` would publish them."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    for number in range(messages):
        task_id = f"t{number}"
        channel.basic_publish(
            "",
            queue,
            json.dumps({"id": task_id}).encode(),
            pika.BasicProperties(
                delivery_mode=2,
                content_type="application/json",
                message_id=task_id,
                headers={"x-attempt": 1},
            ),
        )
    while channel.queue_declare(queue, passive=True).method.message_count < messages:
        connection.process_data_events(0.05)
    connection.close()


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` so that a reader polling for ``path`` never sees half of it."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


def rss_mb(pid: int, field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found for pid {pid}")


def spawn(
    role: str,
    args: argparse.Namespace,
    queue: str,
    result_file: Path,
    log_file: Path,
    metrics_port: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start this script in ``role`` as a subprocess that sees the same modules.

    Its output goes to ``log_file``, as a container's goes to a log collector.
    """
    env = dict(os.environ, PYTHONPATH=inherited_pythonpath(), AMQP_URL=args.amqp_url)
    env["LOG_LEVEL"] = args.log_level
    env.pop("WORKER_METRICS_PORT", None)
    if metrics_port is not None:
        env["WORKER_METRICS_PORT"] = str(metrics_port)
    command = [sys.executable, os.path.abspath(__file__), "--role", role, "--queue", queue]
    command += [
        "--messages",
        str(args.messages),
        "--prefetch",
        str(args.prefetch),
        "--result-file",
        str(result_file),
    ]
    with log_file.open("ab") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def measure(
    role: str, args: argparse.Namespace, workdir: Path, *, metrics: bool = False
) -> tuple[float, float | None]:
    """Messages per second for one consumer kind (and the worker's peak RSS for the framework).

    ``metrics``: the framework worker serves its metrics; they must count every task.
    """
    queue = f"bench-{role}-{uuid.uuid4().hex[:8]}"
    result_file = workdir / f"{queue}.json"
    preload(args.amqp_url, queue, args.messages)
    port = free_port() if metrics else None
    process = spawn(role, args, queue, result_file, workdir / f"{queue}.log", port)
    try:
        wait_for(result_file.exists, args.timeout, message=f"{role} consumer to finish")
        result = json.loads(result_file.read_text())
        peak = rss_mb(process.pid, "VmHWM") if role == "framework" else None
        if port is not None:
            check_counted(port, args.messages)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(30)
        with QueueClient(args.amqp_url) as client:
            # Every message must have been acknowledged: none may be back in the queue.
            left = client.message_count(queue)
            client.delete_worker_queues(bench_settings(args, queue))
        if left:
            raise SystemExit(f"{role} consumer left {left} messages unacknowledged")
    cpu_per_message_us.setdefault(label(role, metrics), []).append(
        result["cpu_seconds"] / result["count"] * 1e6
    )
    switches_per_message.setdefault(label(role, metrics), []).append(
        result["switches"] / result["count"]
    )
    return result["count"] / result["seconds"], peak


#: CPU microseconds per message of each round, by kind (see ``label``).
cpu_per_message_us: dict[str, list[float]] = {}
#: Voluntary context switches per message of each round (all threads), by kind.
switches_per_message: dict[str, list[float]] = {}


def label(role: str, metrics: bool) -> str:
    """``raw``, ``framework`` or ``framework_metrics``: the kind of a round, in the figures."""
    return f"{role}_metrics" if metrics else role


def check_counted(port: int, expected: int) -> None:
    """Scrape the worker's endpoint once: it must have counted every task as completed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    completed = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "worker_tasks_total" and sample.labels.get("outcome") == "completed"
    ]
    if completed != [expected]:
        raise SystemExit(f"the metrics counted {completed} completed tasks, not {expected}")


def bench_settings(args: argparse.Namespace, queue: str) -> WorkerSettings:
    """The settings a worker of this benchmark runs with (to find its queues)."""
    return load_settings(WorkerSettings, amqp_url=args.amqp_url, worker_queue=queue)


def idle_rss(args: argparse.Namespace, workdir: Path) -> float:
    """RSS of a fresh framework worker consuming an empty queue."""
    queue = f"bench-idle-{uuid.uuid4().hex[:8]}"
    process = spawn("framework", args, queue, Path(os.devnull), workdir / f"{queue}.log")
    try:
        with QueueClient(args.amqp_url) as client:
            wait_for(
                lambda: client.consumer_count(queue) == 1,
                args.timeout,
                message="idle worker to consume",
            )
        time.sleep(1.0)  # settle after start-up: the figure is the resting footprint
        return rss_mb(process.pid, "VmRSS")
    finally:
        process.send_signal(signal.SIGTERM)
        if process.wait(30) != 0:
            print("warning: idle worker did not exit 0 on SIGTERM", file=sys.stderr)
        delete_worker_queues(bench_settings(args, queue))


def main() -> None:
    """Parse arguments and run the benchmark (or one of its consumer roles)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=20000, help="tasks per consumer (default 20000)"
    )
    parser.add_argument(
        "--prefetch", type=int, default=100, help="prefetch of both consumers (default 100)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds; medians are kept"
    )
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", DEFAULT_AMQP_URL))
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="LOG_LEVEL of the framework worker (default INFO, the product default)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="also run the framework worker with metrics on; report metrics_overhead",
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="give up after this many seconds per phase"
    )
    parser.add_argument(
        "--role", choices=["bench", "framework", "raw"], default="bench", help=argparse.SUPPRESS
    )
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.messages < 1 or args.prefetch < 1 or args.rounds < 1:
        parser.error("--messages, --prefetch and --rounds must be positive")

    if args.role == "framework":
        serve_framework(args.queue, args.prefetch, args.messages, args.result_file)
        return
    if args.role == "raw":
        serve_raw(args.amqp_url, args.queue, args.prefetch, args.messages, args.result_file)
        return

    raw_rates: list[float] = []
    framework_rates: list[float] = []
    metered_rates: list[float] = []
    peaks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        idle = idle_rss(args, workdir)
        # Alternate the two and keep the medians: a shared machine drifts during a run.
        for round_number in range(1, args.rounds + 1):
            raw_rates.append(measure("raw", args, workdir)[0])
            # With metrics first in every other round: neither side always runs warmer.
            if args.metrics and round_number % 2 == 0:
                metered_rates.append(measure("framework", args, workdir, metrics=True)[0])
            rate, peak = measure("framework", args, workdir)
            framework_rates.append(rate)
            peaks.append(peak or 0.0)
            if args.metrics and round_number % 2 == 1:
                metered_rates.append(measure("framework", args, workdir, metrics=True)[0])
            line = (
                f"round {round_number}: raw {raw_rates[-1]:.0f} msg/s, framework {rate:.0f} msg/s"
            )
            if args.metrics:
                line += f", framework with metrics {metered_rates[-1]:.0f} msg/s"
            print(line, file=sys.stderr)
    raw_rate = statistics.median(raw_rates)
    framework_rate = statistics.median(framework_rates)
    figures = {
        "messages": args.messages,
        "prefetch": args.prefetch,
        "rounds": args.rounds,
        "log_level": args.log_level,
        "framework_msgs_per_s": round(framework_rate, 1),
        "raw_pika_msgs_per_s": round(raw_rate, 1),
        "ratio": round(framework_rate / raw_rate, 3),
        "worker_idle_rss_mb": round(idle, 1),
        "worker_peak_rss_mb": round(max(peaks), 1),
    }
    cpu = {kind: statistics.median(values) for kind, values in cpu_per_message_us.items()}
    switches = {kind: statistics.median(values) for kind, values in switches_per_message.items()}
    # Where the time goes: CPU (every thread, first message to last) and how often the
    # process's threads blocked, per message. Wall time above CPU is waiting (for the broker).
    figures["raw_pika_cpu_us_per_msg"] = round(cpu["raw"], 1)
    figures["framework_cpu_us_per_msg"] = round(cpu["framework"], 1)
    figures["raw_pika_switches_per_msg"] = round(switches["raw"], 3)
    figures["framework_switches_per_msg"] = round(switches["framework"], 3)
    if args.metrics:
        metered_rate = statistics.median(metered_rates)
        figures["framework_metrics_msgs_per_s"] = round(metered_rate, 1)
        figures["metrics_overhead"] = round(1 - metered_rate / framework_rate, 3)
        figures["framework_metrics_cpu_us_per_msg"] = round(cpu["framework_metrics"], 1)
        figures["metrics_cpu_overhead"] = round(1 - cpu["framework"] / cpu["framework_metrics"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
