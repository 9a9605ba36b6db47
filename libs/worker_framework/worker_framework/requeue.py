"""Returning a delivery to its queue without spending a quorum queue's delivery limit.

The hazard
    On RabbitMQ before 4.3 every return of a message to a quorum queue counts toward the
    queue's ``x-delivery-limit``: a ``nack`` with requeue as much as a delivery left
    unacknowledged on a channel that closed. Past the limit the broker dead-letters the message
    (``x-death`` reason ``delivery_limit``) with none of the framework's ``x-error-*`` headers.
    The framework returns deliveries on purpose in three places, none of which says anything
    against the task: unstarted deliveries at shutdown, a delivery that waited too long for a
    thread, and a delivery whose outcome could not be stored (a dead-letter or delay queue
    refusing publishes while it elects a leader, which can repeat many times in a second).
    Counted, those returns could dead-letter a healthy task.

The policy
    While a delivery's ``x-delivery-count`` (the returns so far, set by the broker) stays below
    :data:`RETURNS_KEPT_FOR_CRASHES` short of the limit, it is requeued as usual: cheap, and it
    keeps its place. Past that, the framework publishes a fresh copy to the tail of the queue
    (publisher confirms; same body and id, the normalised headers, ``x-attempt`` unchanged) and
    acks the
    original: the copy starts again at zero returns. If that publish fails, the plain requeue
    is the fallback (the broker keeps the message either way). The limit thus keeps guarding
    against what it is for: messages that crash or disconnect every worker that takes them.
"""

from __future__ import annotations

from worker_framework.broker import BrokerConnection, Delivery
from worker_framework.errors import PublishFailed, UnencodableMessage
from worker_framework.inbound import InboundMessage
from worker_framework.outcomes import DELIVERY_COUNT_HEADER, requeue_copy

#: Returns left to crashes and lost connections: graceful returns never use these, so a task
#: is dead-lettered by the limit only after this many deliveries died with their worker.
RETURNS_KEPT_FOR_CRASHES = 10


def delivery_count(delivery: Delivery) -> int:
    """Returns so far, per the broker's header; 0 when absent or not a number."""
    value = delivery.headers.get(DELIVERY_COUNT_HEADER, 0) if delivery.headers else 0
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(value, 0)


def requeue_would_spend_crash_budget(delivery: Delivery, delivery_limit: int | None) -> bool:
    """Whether a plain requeue of ``delivery`` would eat into the returns kept for crashes."""
    if delivery_limit is None:
        return False
    return delivery_count(delivery) + 1 > delivery_limit - RETURNS_KEPT_FOR_CRASHES


def return_to_queue(
    connection: BrokerConnection,
    queue: str,
    delivery: Delivery,
    message: InboundMessage,
    delivery_limit: int | None,
) -> bool:
    """Give ``delivery`` back to ``queue`` without bringing it nearer the delivery limit.

    ``message`` is the delivery's normalised view: a fresh copy is built from it, never from the
    producer's raw headers, so it always encodes. ``delivery_limit`` is the queue's
    ``x-delivery-limit`` (None for classic queues). Returns False (and does nothing) if the
    delivery's channel is gone: the broker has it back already.
    """
    if not connection.owns(delivery):
        return False
    if requeue_would_spend_crash_budget(delivery, delivery_limit):
        try:
            connection.publish(queue, requeue_copy(message))
        except (PublishFailed, UnencodableMessage):
            return connection.requeue(delivery)
        return connection.ack(delivery)
    return connection.requeue(delivery)
