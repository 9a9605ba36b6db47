"""Property: whatever producers send, one worker process settles every message and keeps going.

Hypothesis generates batches of messages with headers of every AMQP type and size, odd
properties (text, bytes that are not UTF-8, absent) and bodies (garbage, JSON that is no task,
tasks that fail, tasks that complete), mixed with an ordinary task. One real worker process
consumes them all. After each batch: the same process still runs, the main queue is empty
with nothing unacknowledged, every message is in exactly one place (its reply or ``Q.dlq``),
and the ordinary task completed.

Fixed seed and a bounded number of batches (:data:`EXAMPLES`), so CI spends well under a
minute; ``WORKER_PROPERTY_EXAMPLES`` raises it (see test_framework_fuzz.py for how to pass it).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from framework_probe_worker import ProbeWorker
from hostile_producer import Double, HostileProducer, RawTimestamp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from worker_framework import WorkerSettings
from worker_framework.retry_policy import dead_letter_queue_name
from worker_framework.testing import (
    QueueClient,
    WorkerProcess,
    settings_env,
    unique_queue_name,
    wait_for,
    worker_settings,
)

EXAMPLES = int(os.environ.get("WORKER_PROPERTY_EXAMPLES", "12"))
#: Named through the import, so the probe module travels with this test.
PROBE = f"{ProbeWorker.__module__}:main"


@dataclass
class Served:
    """The worker process under test and where its messages end up."""

    worker: WorkerProcess
    queue: str
    replies: str
    dlq: str
    client: QueueClient
    producer: HostileProducer


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """One probe worker process for every generated batch."""
    queue = unique_queue_name("fw-property")
    config: WorkerSettings = worker_settings(
        WorkerSettings, worker_queue=queue, worker_max_retries=0
    )
    with QueueClient() as client, HostileProducer() as producer:
        replies = client.declare_reply_queue()
        env = {**settings_env(config), "WORKER_PREFETCH": "20", "WORKER_CONCURRENCY": "2"}
        try:
            with WorkerProcess(PROBE, "run", env=env) as worker:
                try:
                    wait_for(lambda: client.consumer_count(queue) == 1)
                except AssertionError:
                    print(worker.process.poll(), worker.output())  # shown with the failure
                    raise
                yield Served(
                    worker,
                    queue,
                    replies,
                    dead_letter_queue_name(queue),
                    client,
                    producer,
                )
        finally:
            client.delete_worker_queues(config)
            client.delete_queue(replies)


def _total_messages(queue: str) -> int:
    """Ready plus unacknowledged messages of ``queue``, as the broker counts them."""
    listing = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name", "messages"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in listing.splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    raise AssertionError(f"queue {queue!r} not listed")


short_keys = st.one_of(st.text(max_size=40), st.binary(max_size=80))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.decimals(min_value=-1000, max_value=1000, places=3),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1)),
    st.floats(allow_nan=False, allow_infinity=False).map(Double),
    st.integers(min_value=0, max_value=2**64 - 1).map(RawTimestamp),
    st.text(min_size=1, max_size=2).map(lambda t: t * 2000),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(short_keys, children, max_size=3),
    max_leaves=8,
)
attempts = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(alphabet="0123456789-+ ", max_size=25),
    st.floats(allow_nan=False, allow_infinity=False).map(Double),
    st.just(Decimal("2.5")),
)
properties = st.one_of(st.none(), st.text(max_size=60), st.binary(min_size=1, max_size=200))


@dataclass(frozen=True)
class Hostile:
    """One generated message, and whether it should complete (reply) or be dead-lettered."""

    body: bytes
    headers: dict[Any, Any]
    properties: dict[str, Any]
    completes: bool


@st.composite
def hostile_messages(draw: st.DrawFn) -> Hostile:
    """A message another team's service might send."""
    headers = draw(st.dictionaries(short_keys, values, max_size=5))
    # The broker refuses (and disconnects) a header frame over 128 KiB: stay well below.
    assume(len(repr(headers).encode()) < 60_000)
    if draw(st.booleans()):
        headers["x-attempt"] = draw(attempts)
    kind = draw(st.sampled_from(["garbage", "not-an-object", "invalid", "fails", "completes"]))
    ident = f"h-{uuid.uuid4().hex}"
    body = {
        "garbage": draw(st.binary(max_size=100)),
        "not-an-object": b"[1, 2]",
        "invalid": json.dumps({"id": ident, "fail_times": "many"}).encode(),
        "fails": json.dumps({"id": ident, "fail_permanently": True}).encode(),
        "completes": json.dumps({"id": ident}).encode(),
    }[kind]
    props = {name: draw(properties) for name in ("message_id", "correlation_id", "content_type")}
    return Hostile(body, headers, props, completes=kind == "completes")


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=st.lists(hostile_messages(), min_size=1, max_size=6))
def test_every_hostile_message_is_settled_once_and_the_same_worker_keeps_going(served, batch):
    queue, client = served.queue, served.client
    for message in batch:
        served.producer.publish(
            queue,
            message.body,
            message.headers,
            reply_to=served.replies if message.completes else None,
            **message.properties,
        )
    ordinary = client.publish_task(
        queue, {"id": f"ordinary-{uuid.uuid4().hex}"}, reply_to=served.replies
    )

    expected_replies = 1 + sum(message.completes for message in batch)
    replies = client.wait_for_messages(served.replies, expected_replies, timeout=30)
    dead = client.wait_for_messages(served.dlq, len(batch) - expected_replies + 1, timeout=30)

    assert served.worker.process.poll() is None, served.worker.output()
    assert ordinary in {reply.json()["id"] for reply in replies}
    assert {reply.json()["pid"] for reply in replies} == {served.worker.pid}
    bodies = {message.body for message in batch}
    assert all(letter.body in bodies for letter in dead)
    wait_for(lambda: _total_messages(queue) == 0, message="main queue empty, nothing unacked")
    assert client.message_count(served.replies) == 0
    assert client.message_count(served.dlq) == 0
