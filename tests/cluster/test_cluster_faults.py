"""A real 3-node cluster with quorum queues loses a node (or all, in turn) and no task is lost.

Each test publishes a few thousand tasks, runs two worker processes attached to different
nodes (``AMQP_URL`` lists all three), causes the fault mid-run, and then checks: every task
completed, the retried ones through the delay queue, the doomed ones dead-lettered with the
framework's headers; both workers resumed without a restart (same processes, exit 0 on
SIGTERM). Duplicates (at-least-once) and resume times are printed: run with ``-s`` or read
the captured output.
"""

from __future__ import annotations

import time

from cluster.fault_run import PREFETCH, FaultRun, Tally
from cluster.rabbitmq_cluster import RabbitCluster

#: "A few thousand tasks in flight", small enough for the three tests to stay within minutes.
TASKS = 2500


def check_outcome(run: FaultRun, tally: Tally) -> None:
    """What every fault test demands once the run is over."""
    assert not tally.missing, f"lost tasks: {sorted(tally.missing)[:20]}"
    assert tally.retried_ok, "a retried task did not complete on a later attempt"
    assert tally.dead_lettered == run.doomed
    assert run.stop_workers() == [0, 0], run.worker_logs()


def report(name: str, run: FaultRun, tally: Tally, resumes: dict[str, float | None]) -> None:
    """One line a person (or the issue's closing note) can quote."""
    print(
        f"\n[cluster] {name}: {len(run.published)} tasks, {len(tally.completed)} completed, "
        f"{tally.duplicates} duplicate completions, {tally.dead_letter_copies} dead letters "
        f"for {len(run.doomed)} doomed tasks, resume: {resumes}"
    )


def test_kill_9_of_the_queue_leader_node_loses_no_task(cluster: RabbitCluster, tmp_path) -> None:
    entry = cluster.nodes[0]
    with FaultRun(cluster, tmp_path, work_ms=5) as run:
        run.publish(TASKS, via=entry)
        leader = cluster.queue_leader(run.queue)
        survivor = next(node for node in cluster.nodes if node != leader)
        run.start_workers()
        run.wait_for_completions(TASKS // 5)
        killed_at, done = time.time(), run.completed_count()
        cluster.kill(leader)
        try:
            # Work resumes on the two survivors; then the node comes back, as an orchestrator
            # restarts a crashed broker, and rejoins while tasks are still running.
            run.wait_for_progress(done)
        finally:
            cluster.restart_killed(leader)
        run.wait_until_all_settled(via=survivor)
        tally = run.tally(via=survivor)
        resumes = {
            "all": tally.resume_s(killed_at, run.in_flight),
            "longest pause": tally.longest_pause_s(killed_at),
        }
        for worker in run.workers:
            resumes[f"worker {worker.pid}"] = tally.resume_s(killed_at, PREFETCH, worker.pid)
        report(f"kill -9 of leader {leader.name}", run, tally, resumes)
        check_outcome(run, tally)
        assert all(value is not None for value in resumes.values()), resumes
        run.delete_queues(via=entry)


def test_rolling_restart_of_every_node_loses_no_task(cluster: RabbitCluster, tmp_path) -> None:
    batch = TASKS // 3
    with FaultRun(cluster, tmp_path, work_ms=10) as run:
        run.publish(batch, via=cluster.nodes[2])
        run.start_workers()
        run.wait_for_completions(run.in_flight)
        stops: list[tuple[str, float, int]] = []
        for number, node in enumerate(cluster.nodes):
            done = run.completed_count()
            stops.append((node.name, time.time(), len(run.published) - done))
            cluster.stop_app(node)
            if number:
                # More work arrives while the node is away, through one that is up.
                run.publish(batch, via=cluster.nodes[(number + 1) % len(cluster.nodes)])
            run.wait_for_progress(done)
            cluster.start_app(node)
        via = cluster.nodes[0]
        run.wait_until_all_settled(via=via)
        tally = run.tally(via=via)
        resumes = {
            f"{name} (tasks left {left})": tally.resume_s(stopped_at, run.in_flight)
            for name, stopped_at, left in stops
        }
        report("rolling restart", run, tally, resumes)
        check_outcome(run, tally)
        run.delete_queues(via=via)


def test_network_partition_of_the_leader_node_loses_no_task(
    cluster: RabbitCluster, tmp_path
) -> None:
    entry = cluster.nodes[0]
    with FaultRun(cluster, tmp_path, work_ms=10) as run:
        run.publish(TASKS, via=entry)
        leader = cluster.queue_leader(run.queue)
        majority = next(node for node in cluster.nodes if node != leader)
        run.start_workers()
        run.wait_for_completions(TASKS // 5)
        cut_at, done = time.time(), run.completed_count()
        cluster.partition(leader)
        try:
            run.wait_for_progress(done)
        finally:
            cluster.heal(leader)
        run.wait_until_all_settled(via=majority)
        tally = run.tally(via=majority)
        resumes = {
            "all": tally.resume_s(cut_at, run.in_flight),
            "longest pause": tally.longest_pause_s(cut_at),
        }
        report(f"partition of leader {leader.name}", run, tally, resumes)
        check_outcome(run, tally)
        run.delete_queues(via=entry)
