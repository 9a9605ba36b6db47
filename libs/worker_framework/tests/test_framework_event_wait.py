"""The consuming loop's wait: back as soon as something is dispatched, and at least every tick."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from worker_framework.broker import BrokerConnection, OutgoingMessage
from worker_framework.testing import QueueClient, amqp_url, unique_queue_name

#: Longer than any test here waits: a return before it is not the tick's doing.
LONG_TICK_S = 60.0


@pytest.fixture
def connection() -> Iterator[BrokerConnection]:
    """A broker connection of the framework's adapter, closed after the test."""
    broker = BrokerConnection.connect([amqp_url()], connection_name=unique_queue_name("wait"))
    yield broker
    broker.close()


def tick_pending(connection: BrokerConnection) -> bool:
    """Whether the wait's timer is still armed (it has not fired since it was set)."""
    return connection._tick is not None  # - the timer is what these tests are about


def test_a_callback_from_another_thread_ends_the_wait_and_runs_on_the_connection_thread(
    connection: BrokerConnection,
) -> None:
    ran_on: list[str] = []

    def settle() -> None:
        ran_on.append(threading.current_thread().name)

    threading.Timer(0.05, connection.call_soon_threadsafe, args=(settle,)).start()
    connection.wait_for_events(LONG_TICK_S)

    assert ran_on == [threading.current_thread().name]
    assert tick_pending(connection)  # back at the callback, not at the tick


def test_a_delivery_ends_the_wait(connection: BrokerConnection, client: QueueClient) -> None:
    queue = client.declare_reply_queue(unique_queue_name("wait-delivery"))
    try:
        received: list[bytes] = []
        connection.consume(queue, 10, lambda delivery: received.append(delivery.body))
        client.publish(queue, OutgoingMessage(b'{"n": 1}'))

        while not received:  # the consumer's own frames (consume-ok) may end a wait first
            connection.wait_for_events(LONG_TICK_S)

        assert received == [b'{"n": 1}']
        assert tick_pending(connection)
    finally:
        client.delete_queue(queue)


def test_with_nothing_to_do_the_wait_ends_at_the_tick(connection: BrokerConnection) -> None:
    started = time.monotonic()
    for _ in range(3):
        connection.wait_for_events(0.05)

    # Three ticks passed: each wait re-arms the timer after the previous one fired.
    assert time.monotonic() - started >= 0.15


def test_waits_ended_by_callbacks_share_one_pending_tick(connection: BrokerConnection) -> None:
    first_tick = None
    for _ in range(20):
        threading.Timer(0.001, connection.call_soon_threadsafe, args=(lambda: None,)).start()
        connection.wait_for_events(LONG_TICK_S)
        tick = connection._tick  # - the timer is what this test is about
        assert tick is not None
        first_tick = first_tick or tick
        assert tick is first_tick
