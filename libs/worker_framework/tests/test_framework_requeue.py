"""Graceful requeues never dead-letter a healthy task through a quorum queue's delivery limit."""

from __future__ import annotations

from worker_framework.broker import BrokerConnection
from worker_framework.inbound import normalise
from worker_framework.requeue import return_to_queue
from worker_framework.retry_policy import dead_letter_queue_name
from worker_framework.testing import amqp_url, wait_for
from worker_framework.topology import QUORUM_DELIVERY_LIMIT, declare_topology

#: More returns than the limit allows (the broker dead-letters on return number limit + 1).
RETURNS = QUORUM_DELIVERY_LIMIT + 5


def take(connection, queue):
    return wait_for(lambda: connection.get(queue), message=f"a message in {queue}")


def give_back(connection, queue, delivery, delivery_limit):
    return return_to_queue(connection, queue, delivery, normalise(delivery), delivery_limit)


def test_plain_requeues_dead_letter_a_healthy_task_at_the_quorum_delivery_limit(
    client, make_settings
):
    # The hazard on RabbitMQ before 4.3: every requeue counts, and past the limit the broker
    # dead-letters the task with none of the framework's error headers.
    settings = make_settings(worker_queue_type="quorum")
    queue = settings.worker_queue
    connection = BrokerConnection.connect([amqp_url()])
    try:
        declare_topology(connection, queue, settings)
        client.publish_task(queue, {"id": "healthy"})
        for _ in range(QUORUM_DELIVERY_LIMIT + 1):
            connection.requeue(take(connection, queue))
        [dead] = client.wait_for_messages(dead_letter_queue_name(queue), 1)
    finally:
        connection.close()
    assert dead.json()["id"] == "healthy"
    assert dead.headers["x-death"][0]["reason"] == "delivery_limit"
    assert "x-error-type" not in dead.headers


def test_requeues_through_the_framework_never_reach_the_delivery_limit(client, make_settings):
    settings = make_settings(worker_queue_type="quorum")
    queue = settings.worker_queue
    connection = BrokerConnection.connect([amqp_url()])
    try:
        declare_topology(connection, queue, settings)
        client.publish_task(queue, {"id": "healthy"}, attempt=3, headers={"x-custom": "kept"})
        for _ in range(RETURNS):
            assert give_back(connection, queue, take(connection, queue), QUORUM_DELIVERY_LIMIT)
        connection.process_events(0)
        [task] = client.wait_for_messages(queue, 1)
    finally:
        connection.close()
    assert client.message_count(dead_letter_queue_name(queue)) == 0
    assert task.json()["id"] == "healthy"
    assert task.message_id == "healthy"
    assert task.header("x-attempt") == 3
    assert task.header("x-custom") == "kept"


def test_a_classic_queue_requeue_stays_a_plain_requeue(client, make_settings):
    settings = make_settings()
    queue = settings.worker_queue
    connection = BrokerConnection.connect([amqp_url()])
    try:
        declare_topology(connection, queue, settings)
        client.publish_task(queue, {"id": "classic"})
        for _ in range(3):
            assert give_back(connection, queue, take(connection, queue), None)
        redelivered = take(connection, queue)
    finally:
        connection.close()
    # A plain requeue marks the delivery redelivered; a fresh copy would not be.
    assert redelivered.redelivered
    assert redelivered.message_id == "classic"


def test_a_delivery_count_header_that_is_not_a_number_counts_as_none(client, make_settings):
    settings = make_settings(worker_queue_type="quorum")
    queue = settings.worker_queue
    connection = BrokerConnection.connect([amqp_url()])
    try:
        declare_topology(connection, queue, settings)
        client.publish_task(queue, {"id": "odd"}, headers={"x-delivery-count": "many"})
        assert give_back(connection, queue, take(connection, queue), QUORUM_DELIVERY_LIMIT)
        again = take(connection, queue)
    finally:
        connection.close()
    assert again.message_id == "odd"
