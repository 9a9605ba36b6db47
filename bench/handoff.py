"""What a hand-off between two Python threads costs on this machine.

    python bench/handoff.py            # --count 20000 --rounds 3

The framework runs each task on a task thread and does all AMQP work on the I/O thread, so
every task crosses between threads twice: the delivery goes to a task thread through a
``queue.SimpleQueue`` (``TaskThreads.submit``), and the outcome comes back through
``BlockingConnection.add_callback_threadsafe`` (a byte written to a pipe that wakes the I/O
thread's ``epoll``). A raw pika consumer does neither: its callback runs where the frame was
read. This prints what those two crossings cost, with the same primitives:

- ``delivery_wake_us``: one way, from ``put`` on one thread to ``get`` returning on a thread
  that was blocked waiting (p50/p95/p99). What a lone delivery waits before its task starts.
- ``outcome_wake_us``: one way, from ``call_soon_threadsafe`` (pika's
  ``add_callback_threadsafe``) on a task thread to the callback running on the I/O thread,
  which waits on a real connection to ``AMQP_URL`` as the consuming loop does
  (``BrokerConnection.wait_for_events``) (p50/p95/p99). What a finished task waits before it
  can be settled. ``outcome_wake_timed_loop_us``: the same with the loop's earlier wait,
  ``process_data_events(time_limit=...)`` on every turn (a timer armed and cancelled each time).
- ``pipe_wake_us``: the same crossing without pika: a byte written to a pipe wakes a thread
  blocked in ``select.epoll``. The difference from ``outcome_wake_us`` is pika's own loop.
- ``round_trip``: two threads passing a token back and forth through two queues, as fast as
  they can: wall and CPU microseconds per round trip (two hand-offs), against the same
  ``put``/``get`` pairs in one thread (``same_thread_us``): what each hand-off costs in
  throughput when the two threads share one interpreter lock.

Each figure is the median over ``--rounds``; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import queue
import select
import statistics
import threading
import time
from typing import Any

from worker_framework.broker import BrokerConnection
from worker_framework.consumer import LOOP_TICK_S as TICK_S

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
#: Pause between paced hand-offs, so that the receiving thread is blocked each time.
PACE_S = 0.0002


def percentiles(values_ns: list[int]) -> dict[str, float]:
    """p50/p95/p99 of nanosecond samples, in microseconds."""
    ordered = sorted(values_ns)

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000, 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


def delivery_wake(count: int) -> list[int]:
    """Nanoseconds from ``put`` to ``get`` returning on a blocked thread, ``count`` times."""
    jobs: queue.SimpleQueue[int] = queue.SimpleQueue()
    received: queue.SimpleQueue[int] = queue.SimpleQueue()

    def task_thread() -> None:
        for _ in range(count):
            sent = jobs.get()
            received.put(time.perf_counter_ns() - sent)

    thread = threading.Thread(target=task_thread, daemon=True)
    thread.start()
    samples = []
    for _ in range(count):
        time.sleep(PACE_S)
        jobs.put(time.perf_counter_ns())
        samples.append(received.get())
    thread.join()
    return samples


def outcome_wake(url: str, count: int, *, framework: bool) -> list[int]:
    """Nanoseconds from ``call_soon_threadsafe`` on a task thread to the callback running.

    ``framework``: the I/O thread waits as the consuming loop does
    (``BrokerConnection.wait_for_events``); otherwise with pika's
    ``process_data_events(time_limit=...)`` on each turn, as the loop did before.
    """
    connection = BrokerConnection.connect([url], connection_name="bench-handoff")
    samples: list[int] = []
    ran = threading.Semaphore(0)

    def settle(sent: int) -> None:
        samples.append(time.perf_counter_ns() - sent)
        ran.release()

    def task_thread() -> None:
        for _ in range(count):
            time.sleep(PACE_S)
            sent = time.perf_counter_ns()
            connection.call_soon_threadsafe(functools.partial(settle, sent))
            ran.acquire()

    thread = threading.Thread(target=task_thread, daemon=True)
    thread.start()
    try:
        while len(samples) < count:
            if framework:
                connection.wait_for_events(TICK_S)
            else:
                connection.process_events(TICK_S)
    finally:
        thread.join()
        connection.close()
    return samples


def pipe_wake(count: int) -> list[int]:
    """Nanoseconds from a pipe write on one thread to ``epoll`` returning on another."""
    read_end, write_end = os.pipe()
    poller = select.epoll()
    poller.register(read_end, select.EPOLLIN)
    sent_at: list[int] = []
    done = threading.Semaphore(0)

    def task_thread() -> None:
        for _ in range(count):
            time.sleep(PACE_S)
            sent_at.append(time.perf_counter_ns())
            os.write(write_end, b"x")
            done.acquire()

    thread = threading.Thread(target=task_thread, daemon=True)
    thread.start()
    samples = []
    try:
        for number in range(count):
            poller.poll(1.0)
            samples.append(time.perf_counter_ns() - sent_at[number])
            os.read(read_end, 1)
            done.release()
    finally:
        thread.join()
        poller.close()
        os.close(read_end)
        os.close(write_end)
    return samples


def round_trip(count: int) -> dict[str, float]:
    """Wall and CPU microseconds per round trip between two threads, and in one thread."""
    ping: queue.SimpleQueue[int] = queue.SimpleQueue()
    pong: queue.SimpleQueue[int] = queue.SimpleQueue()

    def echo() -> None:
        for _ in range(count):
            pong.put(ping.get())

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    wall, cpu = time.perf_counter(), time.process_time()
    for number in range(count):
        ping.put(number)
        pong.get()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    thread.join()
    # The same four queue operations without a second thread.
    alone = time.perf_counter()
    for number in range(count):
        ping.put(number)
        pong.put(ping.get())
        pong.get()
    alone = time.perf_counter() - alone
    return {
        "wall_us": wall / count * 1e6,
        "cpu_us": cpu / count * 1e6,
        "same_thread_us": alone / count * 1e6,
    }


def main() -> None:
    """Parse arguments, measure each crossing ``--rounds`` times, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="hand-offs per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are kept")
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", DEFAULT_AMQP_URL))
    args = parser.parse_args()
    if args.count < 1 or args.rounds < 1:
        parser.error("--count and --rounds must be positive")

    rounds: dict[str, list[dict[str, float]]] = {
        "delivery": [],
        "outcome": [],
        "outcome_timed": [],
        "pipe": [],
        "trip": [],
    }
    paced = max(args.count // 4, 1)  # paced measurements take PACE_S each
    for number in range(1, args.rounds + 1):
        rounds["delivery"].append(percentiles(delivery_wake(paced)))
        rounds["outcome"].append(percentiles(outcome_wake(args.amqp_url, paced, framework=True)))
        rounds["outcome_timed"].append(
            percentiles(outcome_wake(args.amqp_url, paced, framework=False))
        )
        rounds["pipe"].append(percentiles(pipe_wake(paced)))
        rounds["trip"].append(round_trip(args.count))
        print(f"round {number}: {json.dumps({k: v[-1] for k, v in rounds.items()})}", flush=True)

    def median(kind: str) -> dict[str, Any]:
        keys = rounds[kind][0].keys()
        return {key: round(statistics.median(r[key] for r in rounds[kind]), 1) for key in keys}

    print(
        json.dumps(
            {
                "count": args.count,
                "rounds": args.rounds,
                "delivery_wake_us": median("delivery"),
                "outcome_wake_us": median("outcome"),
                "outcome_wake_timed_loop_us": median("outcome_timed"),
                "pipe_wake_us": median("pipe"),
                "round_trip": median("trip"),
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
