"""Pipelined publishing: many confirms in flight, every message confirmed or reported."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from worker_framework.broker import BrokerConnection, OutgoingMessage, QueueSpec
from worker_framework.publish_pipeline import check_encodable, plainly_encodable, properties_for
from worker_framework.testing import (
    QueueClient,
    amqp_url,
    close_broker_connections,
    unique_queue_name,
    wait_for,
)


@pytest.fixture
def connection() -> Iterator[BrokerConnection]:
    """A broker connection of the framework's adapter, closed after the test."""
    broker = BrokerConnection.connect([amqp_url()], connection_name=unique_queue_name("pipeline"))
    yield broker
    broker.close()


@pytest.fixture
def queue(client: QueueClient) -> Iterator[str]:
    """A fresh durable queue, deleted after the test."""
    name = client.declare_reply_queue(unique_queue_name("pipeline"))
    yield name
    client.delete_queue(name)


def messages(count: int, prefix: str = "m") -> list[OutgoingMessage]:
    return [
        OutgoingMessage(f'{{"id": "{prefix}{n}"}}'.encode(), {"x-attempt": 1}, f"{prefix}{n}")
        for n in range(count)
    ]


def test_every_message_of_a_large_batch_is_confirmed_and_stored_in_order(
    client: QueueClient, connection: BrokerConnection, queue: str
) -> None:
    # More messages than the window, so the pipeline must wait for confirms on the way.
    batch = messages(2500)
    assert connection.publish_many(queue, batch) == {}
    stored = client.peek(queue, limit=3000)
    assert [message.message_id for message in stored] == [m.message_id for m in batch]


def test_messages_the_broker_refuses_are_reported_and_the_others_stored(
    client: QueueClient, connection: BrokerConnection
) -> None:
    # A full queue that rejects publishes makes the broker nack the excess.
    name = unique_queue_name("pipeline-full")
    connection.declare(QueueSpec(name, {"x-max-length": 5, "x-overflow": "reject-publish"}))
    try:
        failures = connection.publish_many(name, messages(12))
        assert sorted(failures) == list(range(5, 12))
        assert all("refused" in reason for reason in failures.values())
        assert [m.message_id for m in client.peek(name)] == [f"m{n}" for n in range(5)]
    finally:
        client.delete_queue(name)


def test_unroutable_messages_are_reported_each(connection: BrokerConnection) -> None:
    failures = connection.publish_many(unique_queue_name("pipeline-missing"), messages(3))
    assert sorted(failures) == [0, 1, 2]
    assert all("could not be routed" in reason for reason in failures.values())


def test_an_unencodable_message_is_reported_and_its_neighbours_stored(
    client: QueueClient, connection: BrokerConnection, queue: str
) -> None:
    too_big = OutgoingMessage(b"{}", {"h": "x" * 300_000}, message_id="too-big")
    first, last = messages(2)
    failures = connection.publish_many(queue, [first, too_big, last])
    assert list(failures) == [1] and "frame size" in failures[1]
    assert [m.message_id for m in client.peek(queue)] == ["m0", "m1"]
    # The connection is still usable afterwards.
    assert connection.publish_many(queue, messages(1, "again")) == {}


@pytest.mark.parametrize(
    "message",
    [
        OutgoingMessage(b"{}", {"x-attempt": 1}, message_id="é" * 63),
        OutgoingMessage(b"{}", {"ü" * 63: "\U0001f600" * 20_000}, message_id="a"),
        OutgoingMessage(b"{}", {"x-attempt": 2**63 - 1}, correlation_id="c", reply_to="r"),
    ],
)
def test_the_cheap_encodability_check_passes_only_what_really_encodes(
    message: OutgoingMessage,
) -> None:
    frame_max = 131_072
    if plainly_encodable(message, frame_max):
        check_encodable("q", properties_for(message), frame_max)  # must not raise


@pytest.mark.parametrize(
    "message",
    [
        OutgoingMessage(b"{}", {"k" * 300: 1}),
        OutgoingMessage(b"{}", {"x-attempt": 2**64}),
        OutgoingMessage(b"{}", {"nested": {"a": 1}}),
        OutgoingMessage(b"{}", {}, message_id="x" * 300),
        OutgoingMessage(b"{}", {"big": "x" * 40_000}),
        OutgoingMessage(b"{}", {"x-note": "lone \udcff surrogate"}),
        OutgoingMessage(b"{}", {}, message_id="caf\u00e9"),
    ],
)
def test_the_cheap_encodability_check_leaves_the_rest_to_the_full_one(
    message: OutgoingMessage,
) -> None:
    assert not plainly_encodable(message, 131_072)


def test_a_header_that_cannot_be_encoded_is_reported_and_the_others_stored(
    client: QueueClient, connection: BrokerConnection, queue: str
) -> None:
    first, last = messages(2)
    surrogate = OutgoingMessage(b"{}", {"x-note": "lone \udcff"}, message_id="bad")
    failures = connection.publish_many(queue, [first, surrogate, last])
    assert list(failures) == [1] and "cannot be encoded" in failures[1]
    assert [m.message_id for m in client.peek(queue)] == ["m0", "m1"]


def test_a_routing_key_too_long_reports_every_message(connection: BrokerConnection) -> None:
    failures = connection.publish_many("q" * 300, messages(3))
    assert sorted(failures) == [0, 1, 2]
    assert all("routing key" in reason for reason in failures.values())


def test_a_connection_lost_mid_batch_reports_every_message_not_confirmed(
    client: QueueClient, queue: str
) -> None:
    name = unique_queue_name("pipeline-killed")
    broker = BrokerConnection.connect([amqp_url()], connection_name=name)
    batch = messages(200_000)
    # Close the connection from the broker's side once the first messages are stored.
    closer = threading.Thread(
        target=lambda: wait_for(lambda: client.message_count(queue) > 0, timeout=30)
        and close_broker_connections(name)
    )
    closer.start()
    try:
        failures = broker.publish_many(queue, batch)
    finally:
        closer.join()
        broker.close()
    assert failures, "the connection was closed during the batch"
    # Confirms arrive in order: what was confirmed is a prefix, everything after it reported.
    first_reported = min(failures)
    assert sorted(failures) == list(range(first_reported, len(batch)))
    # Whatever was confirmed is in the queue (and perhaps some stored before the close whose
    # confirm never arrived: reported, as nothing vouches for them).
    assert client.message_count(queue) >= first_reported
