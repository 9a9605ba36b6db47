"""One fault-test run on the cluster: tasks in a quorum queue, two worker processes, the tally.

A :class:`FaultRun` declares a worker's topology with ``WORKER_QUEUE_TYPE=quorum``, publishes a
batch of tasks (most complete, some fail once and are retried through a delay queue, some fail
for good and are dead-lettered), and runs two ``cluster_worker`` processes, each with
``AMQP_URL`` listing all three nodes but starting at a different one, so each attaches to its
own node. :meth:`FaultRun.tally` reads what the workers recorded: what is missing (lost),
what was completed more than once (duplicates: at-least-once is the contract), and how long
after a fault the completions resumed.
"""

from __future__ import annotations

import itertools
import json
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pika
from worker_framework.retry_policy import dead_letter_queue_name
from worker_framework.settings import WorkerSettings, load_settings
from worker_framework.testing import (
    QueueClient,
    WorkerProcess,
    settings_env,
    unique_queue_name,
    wait_for,
)
from worker_framework.topology import connect, declare_topology

from cluster.cluster_worker import RECORD_FILE_VARIABLE
from cluster.rabbitmq_cluster import ClusterNode, RabbitCluster

WORKER = "cluster.cluster_worker:main"
#: Small enough to keep a task in flight on every thread, large enough for throughput.
PREFETCH = 8
CONCURRENCY = 4
#: Every task fails once in this many (retried), and one in this many fails for good.
RETRIED_EVERY = 50
DEAD_EVERY = 60


@dataclass(frozen=True)
class Record:
    """One completion written by a worker."""

    task_id: str
    attempt: int
    pid: int
    at: float


@dataclass
class Tally:
    """What a run produced, checked against what was published."""

    completed: set[str]
    duplicates: int
    missing: set[str]
    retried_ok: bool
    dead_lettered: set[str]
    dead_letter_copies: int
    records: list[Record] = field(repr=False)

    def resume_s(self, fault_at: float, in_flight: int, pid: int | None = None) -> float | None:
        """Seconds from ``fault_at`` until completions resumed (of one worker ``pid``, or all).

        At most ``in_flight`` deliveries (prefetch windows) can have reached the workers before
        the fault, so the completion after that many more than were done at the fault must come
        from a delivery made after it: its time bounds the resumption from above.
        """
        times = sorted(r.at for r in self.records if pid is None or r.pid == pid)
        done_before = sum(1 for at in times if at <= fault_at)
        index = done_before + in_flight
        return None if index >= len(times) else round(times[index] - fault_at, 2)

    def longest_pause_s(self, fault_at: float) -> float:
        """The longest time without a first-attempt completion after ``fault_at``.

        Retried tasks come back after their delay by design, so only first attempts count.
        """
        times = [
            fault_at,
            *sorted(r.at for r in self.records if r.attempt == 1 and r.at > fault_at),
        ]
        return round(max((b - a for a, b in itertools.pairwise(times)), default=0.0), 2)


class FaultRun:
    """Tasks on the cluster and two workers consuming them; use as a context manager."""

    def __init__(self, cluster: RabbitCluster, workdir: Path, *, work_ms: int) -> None:
        self.cluster = cluster
        self.work_ms = work_ms
        self.queue = unique_queue_name("cluster")
        self.record_file = workdir / f"{self.queue}.records"
        self.record_file.touch()
        self.settings = load_settings(
            WorkerSettings,
            amqp_url=cluster.urls(),
            worker_queue=self.queue,
            worker_queue_type="quorum",
            worker_prefetch=PREFETCH,
            worker_concurrency=CONCURRENCY,
            worker_max_retries=3,
            worker_initial_delay_ms=200,
            worker_max_delay_ms=1000,
            # A dead peer is noticed by its TCP connection closing; heartbeats catch the rest.
            worker_heartbeat_s=5,
            worker_shutdown_grace_s=10,
        )
        self.published: list[str] = []
        self.retried: set[str] = set()
        self.doomed: set[str] = set()
        self.workers: list[WorkerProcess] = []

    def __enter__(self) -> FaultRun:
        connection = connect(self.settings)
        try:
            declare_topology(connection, self.queue, self.settings)
        finally:
            connection.close()
        return self

    def __exit__(self, *_exc: object) -> None:
        for number, worker in enumerate(self.workers):
            # Kept beside the records (pytest keeps the last runs' tmp_path) for a post-mortem.
            (self.record_file.parent / f"worker-{number}.log").write_text(worker.output())
            worker.__exit__()

    # -- setting up ----------------------------------------------------------------------------

    def publish(self, count: int, via: ClusterNode) -> None:
        """Publish ``count`` more tasks through node ``via`` and wait until the queue has them.

        Each publish waits for its confirm: a quorum queue may refuse a message (``reject-publish``
        while it has no leader), and an unconfirmed refusal would look like a lost task.
        """
        start = len(self.published)
        connection = pika.BlockingConnection(pika.URLParameters(via.url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for number in range(start, start + count):
                task_id = f"t{number:05d}"
                task: dict[str, object] = {"id": task_id, "work_ms": self.work_ms}
                if number % DEAD_EVERY == DEAD_EVERY - 1:
                    task["fail_permanently"] = True
                    self.doomed.add(task_id)
                elif number % RETRIED_EVERY == RETRIED_EVERY - 1:
                    task["fail_times"] = 1
                    self.retried.add(task_id)
                channel.basic_publish(
                    "",
                    self.queue,
                    json.dumps(task).encode(),
                    pika.BasicProperties(
                        delivery_mode=2,
                        content_type="application/json",
                        message_id=task_id,
                        headers={"x-attempt": 1},
                    ),
                )
                self.published.append(task_id)
        finally:
            connection.close()

    def start_workers(self) -> None:
        """Two workers, the first attached to node a, the second to node b."""
        for first in (0, 1):
            env = {**settings_env(self.settings), "AMQP_URL": self.cluster.urls(first)}
            env[RECORD_FILE_VARIABLE] = str(self.record_file)
            self.workers.append(WorkerProcess(WORKER, "run", env=env))

    @property
    def in_flight(self) -> int:
        """The most deliveries the workers can hold at once."""
        return PREFETCH * len(self.workers)

    # -- watching ------------------------------------------------------------------------------

    def records(self) -> list[Record]:
        """Every completion recorded so far."""
        found = []
        for line in self.record_file.read_text().splitlines():
            task_id, attempt, pid, at = line.split()
            found.append(Record(task_id, int(attempt), int(pid), float(at)))
        return found

    def completed_count(self) -> int:
        """Distinct tasks completed so far."""
        return len({record.task_id for record in self.records()})

    def wait_for_completions(self, count: int, timeout: float = 120) -> None:
        """Wait until ``count`` distinct tasks are completed (with the workers' logs on failure)."""

        def done() -> bool:
            exited = [worker.pid for worker in self.workers if worker.process.poll() is not None]
            if exited:
                raise AssertionError(f"worker {exited} exited: a worker must survive any fault")
            return self.completed_count() >= count

        try:
            wait_for(
                done,
                timeout=timeout,
                interval=0.1,
                message=f"{count} tasks of {self.queue} completed",
            )
        except AssertionError as error:
            completed = {record.task_id for record in self.records()}
            missing = sorted(set(self.published) - self.doomed - completed)
            raise AssertionError(
                f"{error}; not completed: {missing[:20]} ({len(missing)})\n{self.worker_logs()}"
            ) from None

    def wait_for_progress(self, done_at_fault: int) -> None:
        """Wait until work went on after a fault: more completions than the workers could have
        had in hand when it happened (or every task, if fewer are left)."""
        expected = len(self.published) - len(self.doomed)
        self.wait_for_completions(min(done_at_fault + self.in_flight + 1, expected))

    def wait_until_all_settled(self, via: ClusterNode, timeout: float = 90) -> None:
        """Wait until every task that should complete did, and the queues hold only dead letters."""
        try:
            self.wait_for_completions(len(self.published) - len(self.doomed), timeout)
        except AssertionError as error:
            queues = self.cluster.ctl(
                via, "list_queues", "name", "leader", "online", "messages", "messages_ready"
            )
            logs = "\n".join(self.cluster.log_tail(node, 60) for node in self.cluster.nodes)
            raise AssertionError(
                f"{error}\nqueues seen from {via.name}:\n{queues}\nnode logs:\n{logs}"
            ) from None
        dlq = dead_letter_queue_name(self.queue)
        wait_for(
            lambda: self.cluster.queue_messages(self.queue, via) == 0
            and self.cluster.queue_messages(dlq, via) >= len(self.doomed),
            timeout=60,
            interval=0.5,
            message=f"{self.queue} empty and {len(self.doomed)} dead letters",
        )

    def worker_logs(self, lines: int = 40) -> str:
        """The end of each worker's log."""
        return "\n".join(
            f"--- worker {worker.pid} ---\n" + "\n".join(worker.output().splitlines()[-lines:])
            for worker in self.workers
        )

    def stop_workers(self) -> list[int]:
        """SIGTERM both workers; return their exit codes."""
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        return [worker.wait(60) for worker in self.workers]

    def tally(self, via: ClusterNode) -> Tally:
        """Read the records and the dead-letter queue (drained) into a :class:`Tally`."""
        records = self.records()
        counts = Counter(record.task_id for record in records)
        retried_ok = all(
            any(r.attempt >= 2 for r in records if r.task_id == task_id) for task_id in self.retried
        )
        dead: list[str] = []
        with QueueClient(via.url) as client:
            while (message := client.get(dead_letter_queue_name(self.queue))) is not None:
                assert message.header("x-error-type") == "WorkerError", message.headers
                dead.append(message.json()["id"])
        return Tally(
            completed=set(counts),
            duplicates=sum(counts.values()) - len(counts),
            missing=set(self.published) - self.doomed - set(counts),
            retried_ok=retried_ok,
            dead_lettered=set(dead),
            dead_letter_copies=len(dead),
            records=records,
        )

    def delete_queues(self, via: ClusterNode) -> None:
        """Delete the run's queues."""
        with QueueClient(via.url) as client:
            client.delete_worker_queues(self.settings)
