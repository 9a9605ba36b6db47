"""Fuzzing the decode/normalise/outcome path in-process: any delivery yields encodable copies.

Fixed seed and a bounded budget in CI (``derandomize``, :data:`EXAMPLES`). For a longer run::

    ./pants test libs/worker_framework/tests/test_framework_fuzz.py \\
        --test-extra-env-vars=WORKER_FUZZ_EXAMPLES=20000 --test-timeout-default=3600

(``WORKER_FUZZ_RANDOM=1`` also drops the fixed seed, to explore new inputs on each run.)
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pika.compat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pika.spec import BasicProperties
from pydantic import BaseModel
from worker_framework import BaseWorker, TaskContext, WorkerError
from worker_framework.broker import Delivery
from worker_framework.graphql_client import encode_input, to_input
from worker_framework.inbound import MAX_ATTEMPT, MAX_SHORT_STRING_BYTES, normalise
from worker_framework.outcomes import (
    DeadLettered,
    RetryScheduled,
    dead_letter_message,
    minimal_dead_letter,
    replay_message,
    retry_message,
)
from worker_framework.retry_policy import RetryPolicy
from worker_framework.task_runner import TaskRunner
from worker_framework.testing import RecordingReporter, worker_settings

EXAMPLES = int(os.environ.get("WORKER_FUZZ_EXAMPLES", "300"))
DERANDOMIZE = os.environ.get("WORKER_FUZZ_RANDOM") != "1"
#: RabbitMQ's default frame size, less the frame's and the content header's own bytes.
MAX_PROPERTIES_BYTES = 131_072 - 8 - 12


class FuzzTask(BaseModel):
    """Any object with a string id and an optional flag."""

    id: str
    fail: bool = False


class FuzzResult(BaseModel):
    """Echoes the id."""

    id: str


class FuzzWorker(BaseWorker[FuzzTask, FuzzResult]):
    """Completes at once, or fails transiently when told to."""

    default_queue = "fuzz"

    def execute_task(self, task: FuzzTask, ctx: TaskContext) -> FuzzResult:
        """Echo, or fail."""
        if task.fail:
            raise WorkerError("told to fail")
        return FuzzResult(id=task.id)


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for level in range(depth):
        value = {"n": value} if level % 2 else [value]
    return value


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    # pika decodes 64-bit ints as this subclass of int
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(pika.compat.long),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.binary(max_size=300),
    st.datetimes(timezones=st.none() | st.just(UTC)),
    st.integers(min_value=1, max_value=40).map(_nested),
    st.just("t" * 20_000),
    st.builds(object),
)
keys = st.one_of(st.text(max_size=100), st.binary(max_size=300), st.integers())
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=12,
)
attempts = st.one_of(
    values,
    st.integers(),
    st.text(alphabet="0123456789+- e.", max_size=30),
    st.sampled_from(["21", "123456789012345678901", "inf", "-1", "0"]),
)
properties = st.one_of(st.none(), st.text(max_size=300), st.binary(max_size=300), st.integers())
bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda ident, fail: json.dumps({"id": ident, "fail": fail}).encode(),
        st.text(max_size=300) | st.integers(),
        st.booleans(),
    ),
    st.just(b"[" * 5000),
)


@st.composite
def deliveries(draw: st.DrawFn) -> Delivery:
    """A delivery as pika might hand it over, and worse."""
    headers = draw(st.dictionaries(keys, values, max_size=6))
    if draw(st.booleans()):
        headers["x-attempt"] = draw(attempts)
    if draw(st.booleans()):
        headers["x-big"] = "b" * draw(st.integers(min_value=0, max_value=140_000))
    return Delivery(
        body=draw(bodies),
        headers=headers,  # type: ignore[arg-type]
        message_id=draw(properties),  # type: ignore[arg-type]
        correlation_id=draw(properties),  # type: ignore[arg-type]
        reply_to=draw(properties),  # type: ignore[arg-type]
        content_type=draw(properties),  # type: ignore[arg-type]
        redelivered=draw(st.booleans()),
        delivery_tag=1,
        channel=None,
    )


RUNNER = TaskRunner(
    FuzzWorker(worker_settings()),
    RecordingReporter(),
    RetryPolicy(max_retries=3, initial_delay_ms=10, backoff_factor=2.0, max_delay_ms=100),
    "fuzz",
)


def _encoded_size(message: Any) -> int:
    """The properties' size as pika's own encoder writes them (raises if it cannot)."""
    properties = BasicProperties(
        content_type=message.content_type,
        delivery_mode=2,
        headers=dict(message.headers),
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        expiration=str(message.expiration_ms) if message.expiration_ms is not None else None,
    )
    return sum(len(piece) for piece in properties.encode())


@settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(delivery=deliveries())
def test_any_delivery_normalises_runs_and_yields_copies_pika_can_encode(delivery):
    message = normalise(delivery)

    assert 1 <= message.attempt <= MAX_ATTEMPT
    for text in (message.message_id, message.correlation_id, message.reply_to):
        assert text is None or (isinstance(text, str) and text.encode("utf-8"))
        assert text is None or len(text.encode("utf-8")) <= MAX_SHORT_STRING_BYTES
    assert message.body == delivery.body

    run = RUNNER.run(
        message.body,
        attempt=message.attempt,
        redelivered=message.redelivered,
        message_id=message.message_id,
        state=dict(message.state),
    )
    retry = RetryScheduled("E", "x" * 5000, message.attempt + 1, 10, 11, datetime.now(UTC))
    dead = DeadLettered("E" * 500, "\ud800 y" * 2000)
    copies = [
        retry_message(message, retry),
        dead_letter_message(message, dead, message.attempt),
        minimal_dead_letter(message, "E", "why"),
        replay_message(message),
    ]
    for copy in copies:
        assert copy.body == delivery.body
        assert _encoded_size(copy) <= MAX_PROPERTIES_BYTES

    update = RUNNER.final_update(run)
    if update is not None:
        assert isinstance(json.loads(encode_input(to_input(update)))["taskId"], str)


def test_dates_pika_cannot_encode_become_text_and_encodable_values_stay_as_they_are():
    edge = normalise(
        Delivery(
            b"{}",
            {"old": datetime(1900, 1, 1), "late": datetime.now(UTC) + timedelta(days=1)},
            None,
            None,
            None,
            None,
            False,
            1,
            None,
        )
    )
    assert edge.headers["old"] == "1900-01-01T00:00:00"
    assert "old: date outside the AMQP range, sent as text" in edge.notes
    assert isinstance(edge.headers["late"], datetime)
    assert (
        Decimal("1.5")
        == normalise(
            Delivery(b"", {"d": Decimal("1.5")}, None, None, None, None, False, 1, None)
        ).headers["d"]
    )
