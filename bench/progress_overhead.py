"""How much does reporting progress to task-api over GraphQL slow a worker down?

Runs a real task-api and a framework worker (in this process, on the real broker) over the same
workload: ``--messages`` tasks, each reporting ``--steps`` progress steps. Once with the
LogReporter writing every update to the log (progress only in the log), once with the
GraphQLReporter at its defaults (what ``GRAPHQL_URL`` selects), and once with the LogReporter as
a worker runs it by default at INFO, which keeps a healthy task's updates out of the log (the
``silent`` baseline: the worker with next to no reporting at all). Throughput is measured from
the worker's start until every task has reported its final status; the stricter "delivered"
figure also waits until the reporter has delivered everything to task-api. The last line
printed is one JSON object:

    {"log_reporter_msgs_per_s": ..., "graphql_reporter_msgs_per_s": ..., "overhead": ...,
     "overhead_vs_silent": ..., "all_final_statuses_in_task_api": true, ...}

``overhead`` = 1 - graphql / log; ``overhead_vs_silent`` = 1 - graphql / silent.
Run: ``./pants run bench/progress_overhead.py -- --messages 2000`` (RabbitMQ at AMQP_URL,
default amqp://guest:guest@127.0.0.1:5672/%2F).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import BaseModel
from task_api.testing import TaskApiServer, graphql
from worker_framework import (
    BaseWorker,
    LogReporter,
    ProgressReporter,
    ProgressUpdate,
    TaskContext,
    WorkerSettings,
)
from worker_framework.graphql_reporter import (
    DEFAULT_LINGER_S,
    DEFAULT_MAX_BATCH,
    GraphQLReporter,
)
from worker_framework.testing import (
    QueueClient,
    WorkerThread,
    amqp_url,
    delete_worker_queues,
    unique_queue_name,
    wait_for,
    worker_settings,
)

#: Upper bound for one run; a healthy run of 2000 tasks takes seconds.
RUN_TIMEOUT_S = 600.0
#: How long the GraphQL reporter may flush after the run before statuses are checked.
FLUSH_S = 120.0
PAGE = """
query Page($after: String) {
  tasks(first: 100, after: $after) {
    edges { node { id status } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


class BenchTask(BaseModel):
    """A task that only reports progress."""

    id: str
    steps: int


class BenchResult(BaseModel):
    """The task's id back."""

    id: str


class BenchWorker(BaseWorker[BenchTask, BenchResult]):
    """Reports ``steps`` progress steps and completes: the cost measured is the reporting."""

    default_queue = "bench-progress"

    def worker_type(self) -> str:
        """Reported as ``bench``."""
        return "bench"

    def execute_task(self, task: BenchTask, ctx: TaskContext) -> BenchResult:
        """Report each step, then complete."""
        for step in range(1, task.steps + 1):
            ctx.progress(step * 100 // task.steps, f"step {step}")
        return BenchResult(id=task.id)


class CountingReporter(ProgressReporter):
    """Forwards to ``inner`` and counts final statuses (the same small cost in both runs)."""

    def __init__(self, inner: ProgressReporter) -> None:
        self.inner = inner
        self.finished = 0
        self._lock = threading.Lock()

    def report(self, update: ProgressUpdate) -> None:
        """Count final statuses, then forward."""
        if update.status.value in ("COMPLETED", "FAILED"):
            with self._lock:
                self.finished += 1
        self.inner.report(update)

    def close(self, timeout_s: float) -> None:
        """Close the inner reporter."""
        self.inner.close(timeout_s)


def run_once(
    reporter: ProgressReporter, messages: int, steps: int, prefetch: int
) -> tuple[float, list[str]]:
    """Process ``messages`` tasks with ``reporter``; return (tasks per second, task ids)."""
    settings = worker_settings(
        WorkerSettings, worker_queue=unique_queue_name("bench"), worker_prefetch=prefetch
    )
    counting = CountingReporter(reporter)
    worker = WorkerThread(BenchWorker, settings, reporter=counting)
    try:
        # Starting the worker declares its queues; stop it, fill the queue, then time a fresh one.
        worker.start()
        worker.stop()
        with QueueClient() as client:
            ids = [
                client.publish_task(str(settings.worker_queue), {"steps": steps})
                for _ in range(messages)
            ]
        worker = WorkerThread(BenchWorker, settings, reporter=counting)
        started = time.perf_counter()
        worker.start()
        wait_for(lambda: counting.finished >= messages, RUN_TIMEOUT_S, interval=0.01)
        elapsed = time.perf_counter() - started
        worker.stop()
    finally:
        delete_worker_queues(settings)
    return messages / elapsed, ids


def final_statuses_in_api(url: str, ids: list[str]) -> int:
    """How many of ``ids`` task-api shows COMPLETED."""
    wanted = set(ids)
    found = 0
    after = None
    while True:
        page = graphql(url, PAGE, {"after": after})["data"]["tasks"]
        found += sum(
            1
            for e in page["edges"]
            if e["node"]["id"] in wanted and e["node"]["status"] == "COMPLETED"
        )
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both passes and print the figures; the last line is the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=2000, help="tasks per run (default 2000)")
    parser.add_argument(
        "--steps", type=int, default=10, help="progress steps per task (default 10)"
    )
    parser.add_argument("--prefetch", type=int, default=10, help="WORKER_PREFETCH (default 10)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs per reporter, alternating which goes first; the best of each counts (default 3)",
    )
    args = parser.parse_args(argv)

    log_rates: list[float] = []
    silent_rates: list[float] = []
    graphql_rates: list[float] = []
    delivered_rates: list[float] = []
    present_all = True
    present_min = args.messages
    with tempfile.TemporaryDirectory(prefix="bench-progress-") as tmp:
        # Every run logs the same way, to a file: the terminal would otherwise be the bottleneck.
        logger.remove()
        logger.add(Path(tmp) / "worker.log", level="INFO")
        with TaskApiServer(extra_env={"AMQP_URL": amqp_url()}) as api:
            for round_number in range(args.rounds):
                order = ["log", "graphql", "silent"]
                if round_number % 2:
                    order.reverse()
                for kind in order:
                    if kind in ("log", "silent"):
                        # "log" writes every update at INFO; "silent" is the default reporter.
                        level = "INFO" if kind == "log" else "DEBUG"
                        rate, _ = run_once(
                            LogReporter(routine_level=level),
                            args.messages,
                            args.steps,
                            args.prefetch,
                        )
                        (log_rates if kind == "log" else silent_rates).append(rate)
                        print(
                            f"round {round_number + 1} {kind} log reporter: {rate:8.1f} tasks/s",
                            file=sys.stderr,
                        )
                        continue
                    reporter = GraphQLReporter(api.url, None)
                    rate, ids = run_once(reporter, args.messages, args.steps, args.prefetch)
                    flush_started = time.perf_counter()
                    reporter.close(FLUSH_S)
                    flush_s = time.perf_counter() - flush_started
                    present = final_statuses_in_api(api.url, ids)
                    present_all = present_all and present == args.messages
                    present_min = min(present_min, present)
                    graphql_rates.append(rate)
                    delivered = args.messages / (args.messages / rate + flush_s)
                    delivered_rates.append(delivered)
                    print(
                        f"round {round_number + 1} graphql reporter: {rate:8.1f} tasks/s"
                        f" (all statuses in task-api: {delivered:.1f} tasks/s, {present} present)",
                        file=sys.stderr,
                    )

    log_rate, silent_rate, graphql_rate = max(log_rates), max(silent_rates), max(graphql_rates)
    summary = {
        "messages": args.messages,
        "steps_per_task": args.steps,
        "rounds": args.rounds,
        "graphql_linger_s": DEFAULT_LINGER_S,
        "graphql_max_batch": DEFAULT_MAX_BATCH,
        "log_reporter_msgs_per_s": round(log_rate, 1),
        "graphql_reporter_msgs_per_s": round(graphql_rate, 1),
        "overhead": round(1 - graphql_rate / log_rate, 4),
        "silent_log_reporter_msgs_per_s": round(silent_rate, 1),
        "overhead_vs_silent": round(1 - graphql_rate / silent_rate, 4),
        "graphql_delivered_msgs_per_s": round(max(delivered_rates), 1),
        "delivered_overhead": round(1 - max(delivered_rates) / log_rate, 4),
        "final_statuses_in_task_api_min": present_min,
        "all_final_statuses_in_task_api": present_all,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
