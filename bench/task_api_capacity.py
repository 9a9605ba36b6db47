"""Can one task-api keep up with several workers reporting progress at full speed?

    python bench/task_api_capacity.py --messages 8000 --workers 4 --steps 10 --backend sqlite

A real task-api (SQLite in a temporary folder, or a fresh PostgreSQL database) and ``--workers``
framework worker processes on one preloaded queue of no-op tasks that each report ``--steps``
progress steps. Each round runs the workers twice, alternating: ``silent`` (no ``GRAPHQL_URL``:
the log reporter at INFO, which writes nothing for a healthy task) and ``graphql`` (every update
sent to task-api by the GraphQL reporter). Figures: tasks/s from the first task started to the
last acknowledged; ``overhead_vs_silent`` = 1 - graphql / silent; task-api's CPU seconds
(``/proc``) over the graphql run, including the workers' final flush, per task and per reported
update, and divided by the run's duration (above 1.0: task-api needed more than one core for as
long as the run lasted, so it finished storing after the workers had finished);
``updates_stored_per_task`` (history rows: what reached task-api after the reporter coalesced a
task's steps, and was stored) and per second of run, task-api's CPU per stored update; the
workers' own CPU per task in both kinds of run (``getrusage`` of the ended worker processes:
what reporting costs the workers themselves); on PostgreSQL the CPU of the database server
processes serving task-api, per task; ``all_final_statuses_stored``: every task COMPLETED in
the database afterwards.

Medians over ``--rounds``; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel
from shared_utils.child_process import inherited_pythonpath
from task_api.testing import TaskApiServer
from worker_framework import BaseWorker, ProgressReporter, ProgressUpdate, TaskContext
from worker_framework.command_context import make_reporter
from worker_framework.consumer import Consumer
from worker_framework.logging import configure_logging
from worker_framework.settings import WorkerSettings, load_settings
from worker_framework.shutdown import SignalHandlers
from worker_framework.testing import QueueClient, wait_for

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
POSTGRES_ADMIN_URL = os.environ.get(
    "TASK_API_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
#: How long a stopping worker may take to deliver its last updates to task-api.
FLUSH_TIMEOUT_S = 60.0
#: How often a worker writes its counts for the benchmark to read.
COUNT_EVERY_S = 0.05


class StepsTask(BaseModel):
    """A task that only reports progress."""

    id: str
    steps: int


class StepsWorker(BaseWorker[StepsTask, StepsTask]):
    """Reports ``steps`` progress steps and completes."""

    default_queue = "bench-capacity"

    def worker_type(self) -> str:
        """Reported as ``bench``."""
        return "bench"

    def execute_task(self, task: StepsTask, ctx: TaskContext) -> StepsTask:
        """Report each step, then complete."""
        for step in range(1, task.steps + 1):
            ctx.progress(step * 100 // task.steps, f"step {step}")
        return task


class Counting(ProgressReporter):
    """Counts completed tasks (reported after their ack) and forwards every update."""

    def __init__(self, inner: ProgressReporter) -> None:
        self.inner = inner
        self.done = 0
        self.first_ns = 0
        self.last_ns = 0

    def report(self, update: ProgressUpdate) -> None:
        """Time the first start and the last completion, then forward."""
        now = time.monotonic_ns()
        if not self.first_ns:
            self.first_ns = now
        if update.status.value == "COMPLETED":
            self.done += 1
            self.last_ns = now
        self.inner.report(update)

    def close(self, timeout_s: float) -> None:
        """Close the inner reporter (the GraphQL reporter flushes here)."""
        self.inner.close(timeout_s)


def serve_worker(queue: str, count_file: Path) -> None:
    """One worker process (``--role worker``): counts written to ``count_file`` as it goes."""
    settings = load_settings(WorkerSettings, worker_queue=queue)
    configure_logging(settings)
    reporter = Counting(make_reporter(settings))
    consumer = Consumer(StepsWorker(settings), settings, reporter)
    SignalHandlers(consumer.request_stop).install()

    def write_counts() -> None:
        while True:
            counts = {"done": reporter.done, "first": reporter.first_ns, "last": reporter.last_ns}
            partial = count_file.with_suffix(".partial")
            partial.write_text(json.dumps(counts))
            os.replace(partial, count_file)
            time.sleep(COUNT_EVERY_S)

    threading.Thread(target=write_counts, daemon=True).start()
    consumer.run()
    reporter.close(FLUSH_TIMEOUT_S)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU time of this process's children that have ended (the workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def database_backends(database_url: str) -> list[int]:
    """The pids of PostgreSQL's server processes serving ``database_url`` (none for SQLite)."""
    if not database_url.startswith("postgresql"):
        return []
    database = database_url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return [int(row[0]) for row in rows]


def preload(url: str, queue: str, count: int, steps: int) -> None:
    """Fill ``queue`` with ``count`` tasks (through the framework's pipelined publish)."""
    from worker_framework.broker import BrokerConnection, OutgoingMessage

    connection = BrokerConnection.connect([url])
    try:
        messages = [
            OutgoingMessage(
                json.dumps({"id": f"{queue}-{n}", "steps": steps}).encode(),
                {"x-attempt": 1},
                message_id=f"{queue}-{n}",
            )
            for n in range(count)
        ]
        failures = connection.publish_many(queue, messages)
    finally:
        connection.close()
    if failures:
        raise SystemExit(f"preload: {len(failures)} tasks not confirmed")


def run_workers(
    args: argparse.Namespace, api: TaskApiServer, graphql: bool, workdir: Path
) -> dict[str, Any]:
    """Drain a preloaded queue with ``--workers`` processes; rate and task-api CPU."""
    queue = f"bench-capacity-{uuid.uuid4().hex[:8]}"
    with QueueClient(args.amqp_url) as client:
        client.declare_reply_queue(queue)
    preload(args.amqp_url, queue, args.messages, args.steps)
    env = dict(os.environ, PYTHONPATH=inherited_pythonpath(), AMQP_URL=args.amqp_url)
    env.update(LOG_LEVEL="INFO", WORKER_PREFETCH=str(args.prefetch))
    env.pop("GRAPHQL_URL", None)
    if graphql:
        env["GRAPHQL_URL"] = api.url
    counts = [workdir / f"{queue}-{n}.json" for n in range(args.workers)]
    api_pid = api.pid
    assert api_pid is not None
    cpu_before = cpu_seconds(api_pid)
    backends = database_backends(api.database_url)
    database_before = sum(cpu_seconds(pid) for pid in backends)
    workers_before = children_cpu_seconds()
    command = [sys.executable, os.path.abspath(__file__), "--role", "worker", "--queue", queue]
    workers = [
        subprocess.Popen(
            [*command, "--count-file", str(count_file)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for count_file in counts
    ]

    def read() -> list[dict[str, int]]:
        return [json.loads(path.read_text()) for path in counts if path.exists()]

    try:
        wait_for(
            lambda: sum(c["done"] for c in read()) >= args.messages,
            args.timeout,
            message="every task acknowledged",
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(120)  # the GraphQL reporter flushes what is left before exiting
    cpu = cpu_seconds(api_pid) - cpu_before
    database_cpu = sum(cpu_seconds(pid) for pid in backends) - database_before
    workers_cpu = children_cpu_seconds() - workers_before
    final = read()
    first = min(c["first"] for c in final if c["first"])
    last = max(c["last"] for c in final)
    seconds = (last - first) / 1e9
    with QueueClient(args.amqp_url) as client:
        client.delete_worker_queues(
            load_settings(WorkerSettings, amqp_url=args.amqp_url, worker_queue=queue)
        )
        client.delete_queue(queue)
    return {
        "rate": args.messages / seconds,
        "seconds": seconds,
        "api_cpu_s": cpu,
        "database_cpu_s": database_cpu,
        "workers_cpu_s": workers_cpu,
        "queue": queue,
    }


def _count_of_run(database_url: str, query: str, queue_prefix: str) -> int:
    """``query`` (a COUNT ending in ``LIKE``) over the rows of one run's tasks."""
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return int(conn.execute(query + " ?", (queue_prefix + "-%",)).fetchone()[0])
    with psycopg.connect(database_url) as conn:
        row = conn.execute(query + " %s", (queue_prefix + "-%",)).fetchone()
        return int(row[0]) if row else 0


def stored_updates(database_url: str, queue_prefix: str) -> int:
    """History rows of a run's tasks: the updates task-api stored (after coalescing)."""
    query = "SELECT COUNT(*) FROM task_api_history WHERE task_id LIKE"
    return _count_of_run(database_url, query, queue_prefix)


def completed_in_store(database_url: str, queue_prefix: str) -> int:
    """Tasks of a run recorded as COMPLETED (read from the database itself)."""
    query = "SELECT COUNT(*) FROM task_api_tasks WHERE status = 'COMPLETED' AND id LIKE"
    return _count_of_run(database_url, query, queue_prefix)


def measure_backend(args: argparse.Namespace, backend: str, workdir: Path) -> dict[str, Any]:
    """All rounds on one storage back end."""
    database = None
    database_url = None
    if backend == "postgresql":
        database = f"bench_capacity_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        database_url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{database}"
    try:
        with TaskApiServer(database_url=database_url) as api:
            silent: list[dict[str, Any]] = []
            graphql: list[dict[str, Any]] = []
            all_stored = True
            for round_number in range(1, args.rounds + 1):
                for kind in ("silent", "graphql") if round_number % 2 else ("graphql", "silent"):
                    run = run_workers(args, api, kind == "graphql", workdir)
                    if kind == "silent":
                        silent.append(run)
                        continue
                    graphql.append(run)
                    run["stored"] = stored_updates(api.database_url, run["queue"])
                    done = completed_in_store(api.database_url, run["queue"])
                    all_stored = all_stored and done == args.messages
                print(f"{backend} round {round_number} done", file=sys.stderr)
    finally:
        if database is not None:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )
    silent_rate = statistics.median(run["rate"] for run in silent)
    graphql_rate = statistics.median(run["rate"] for run in graphql)
    cpu = statistics.median(run["api_cpu_s"] for run in graphql)
    busy = statistics.median(run["api_cpu_s"] / run["seconds"] for run in graphql)
    stored = statistics.median(run["stored"] for run in graphql)
    updates = args.messages * (args.steps + 2)  # PROCESSING, the steps, COMPLETED

    def per_task_ms(runs: list[dict[str, Any]], key: str) -> float:
        seconds: float = statistics.median(run[key] for run in runs)
        return round(seconds * 1000 / int(args.messages), 3)

    figures = {
        "silent_msgs_per_s": round(silent_rate, 1),
        "graphql_msgs_per_s": round(graphql_rate, 1),
        "overhead_vs_silent": round(1 - graphql_rate / silent_rate, 3),
        "updates_reported_per_s": round(graphql_rate * (args.steps + 2), 1),
        "updates_stored_per_task": round(stored / args.messages, 2),
        "updates_stored_per_s": round(
            statistics.median(run["stored"] / run["seconds"] for run in graphql), 1
        ),
        "task_api_cpu_s": round(cpu, 2),
        "task_api_cpu_ms_per_task": round(cpu * 1000 / args.messages, 3),
        "task_api_cpu_us_per_reported_update": round(cpu * 1e6 / updates, 1),
        "task_api_cpu_us_per_stored_update": round(cpu * 1e6 / max(stored, 1), 1),
        "task_api_cpu_s_per_run_s": round(busy, 2),
        "workers_cpu_ms_per_task_silent": per_task_ms(silent, "workers_cpu_s"),
        "workers_cpu_ms_per_task_graphql": per_task_ms(graphql, "workers_cpu_s"),
        "all_final_statuses_stored": all_stored,
    }
    if backend == "postgresql":
        figures["database_cpu_ms_per_task"] = per_task_ms(graphql, "database_cpu_s")
    return figures


def main() -> None:
    """Parse arguments and run the benchmark (or one worker, ``--role worker``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=8000, help="tasks per run (8000)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (4)")
    parser.add_argument("--steps", type=int, default=10, help="progress steps per task (10)")
    parser.add_argument("--prefetch", type=int, default=10, help="WORKER_PREFETCH (10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument(
        "--backend", choices=["sqlite", "postgresql", "both"], default="both", help="(both)"
    )
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", DEFAULT_AMQP_URL))
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument("--role", default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--count-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "worker":
        serve_worker(args.queue, args.count_file)
        return
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    figures: dict[str, Any] = {"messages": args.messages, "workers": args.workers}
    figures.update(steps=args.steps, prefetch=args.prefetch, rounds=args.rounds)
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        for backend in backends:
            figures[backend] = measure_backend(args, backend, Path(tmp))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
